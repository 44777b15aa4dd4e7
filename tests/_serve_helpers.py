"""Start ``pneumo serve`` for a test and stop it (with everything it started) afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

PNEUMO = str(Path(sys.executable).parent / "pneumo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(args: list[str], port: int, log_path: Path, startup_seconds: float,
                   env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """``pneumo serve ARGS`` listening on 127.0.0.1:``port`` (output in ``log_path``); SIGTERM at the end.

    ``env``: variables set (added to this process's environment) for the server only.
    """
    log = open(log_path, "w")
    proc = subprocess.Popen([PNEUMO, "serve", *args, "--port", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env=None if env is None else {**os.environ, **env})
    deadline = time.monotonic() + startup_seconds
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"pneumo serve exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"pneumo serve did not listen within {startup_seconds} s:\n{log_path.read_text()}")
                time.sleep(0.5)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
