"""The worker inside the sandbox: run one submission, then answer the grader's questions as data.

``python -m pneumo_lib.assignments.runner NOTEBOOK --assignment a1_data --out-fd 3 --in-fd 4``
executes the notebook's code cells in an IPython shell (magics work, no Jupyter kernel or
server needed), each under a time limit, reporting ``cell_start`` / ``cell_end`` events on
the output pipe. Then it says ``ready`` and serves the grader's requests until the grader
hangs up:

* ``get NAME``: the value of a notebook name, encoded as data by :mod:`.wire` (a function
  becomes a reference the grader can call);
* ``call REF ARGS``: call that function on arguments the grader chose, under a time limit,
  and return the result (or the exception's type and message) as data.

This process never sees a hidden test, a solution, an expected value or a verdict: the
checks run in the grader (:mod:`pneumo_lib.assignments.grading`), which only asks for the
student's values. Everything this process writes is untrusted (student code shares it and
may write to the pipes); it can only ever be the student's answers. The limits on memory,
CPU time, processes and file size are set by the sandbox (``prlimit``) before this process
starts, and again here on itself (for the unsandboxed ``--unsafe-no-sandbox`` mode).
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from pneumo_lib.assignments import wire


class TimeLimit(BaseException):
    """Raised in student code when its time is up (a BaseException: ``except Exception`` cannot swallow it)."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`TimeLimit` in the main thread after ``seconds`` of wall time."""
    def _expire(signum, frame):
        raise TimeLimit(f"time limit of {seconds:g} s exceeded")

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Channel:
    """The two pipes to the grader: JSON lines out (flushed at once), requests in."""

    def __init__(self, out_fd: int, in_fd: int):
        self._out = os.fdopen(out_fd, "wb", buffering=0)
        self._in = os.fdopen(in_fd, "rb")

    def emit(self, kind: str, **fields: Any) -> None:
        """Write one event ``{"event": kind, ...}``."""
        self._out.write(wire.dumps({"event": kind, **fields}))

    def reply(self, message: dict) -> None:
        """Write one answer to a request."""
        self._out.write(wire.dumps(message))

    def request(self) -> dict | None:
        """The next request, or None when the grader hung up."""
        line = self._in.readline(wire.MAX_LINE)
        return wire.loads(line) if line else None


def _describe(err: BaseException | None) -> str | None:
    if err is None:
        return None
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__


def run_cells(shell, cells: list[str], skip: set[int], timeout: float, channel: Channel) -> None:
    """Execute code cells in order; errors and timeouts are recorded, never fatal."""
    for index, source in enumerate(cells):
        if index in skip:
            continue
        channel.emit("cell_start", index=index)
        error: BaseException | None = None
        try:
            with time_limit(timeout):
                result = shell.run_cell(source, store_history=False)
            error = result.error_before_exec or result.error_in_exec
        except TimeLimit as err:  # fired outside user code (rare): same meaning
            error = err
        channel.emit("cell_end", index=index, error=_describe(error))


def _encode(value: Any, callables: dict, ref: str) -> dict:
    try:
        return {"ok": wire.encode(value, callables=callables, ref=ref)}
    except Exception as err:  # a value that breaks its own conversion
        return {"ok": {"$t": "opaque", "type": type(value).__name__[:80],
                       "repr": f"<a value that could not be sent: {_describe(err)}>"}}


def serve(channel: Channel, namespace: dict, default_timeout: float) -> None:
    """Answer ``get`` and ``call`` requests until the grader hangs up."""
    callables: dict[str, Any] = {}
    while True:
        try:
            req = channel.request()
        except wire.WireError:
            return
        if req is None or req.get("op") == "bye":
            return
        rid, op = req.get("id"), req.get("op")
        if op == "get":
            name = str(req.get("name"))
            if name not in namespace:
                channel.reply({"id": rid, "missing": True})
            else:
                channel.reply({"id": rid, **_encode(namespace[name], callables, name)})
        elif op == "call":
            fn = callables.get(str(req.get("ref")))
            if fn is None:
                channel.reply({"id": rid, "error": {"type": "NameError", "message": "no such function"}})
                continue
            try:
                args = wire.decode(req.get("args", {"$t": "list", "v": []}))
                kwargs = wire.decode(req.get("kwargs", {"$t": "dict", "v": []}))
                with time_limit(float(req.get("timeout", default_timeout))):
                    value = fn(*args, **kwargs)
            except TimeLimit as err:
                channel.reply({"id": rid, "error": {"type": "TimeLimit", "message": str(err)}})
                continue
            except BaseException as err:  # student code: anything, even SystemExit
                channel.reply({"id": rid, "error": {"type": type(err).__name__[:80], "message": str(err)[:2000]}})
                continue
            channel.reply({"id": rid, **_encode(value, callables, f"{rid}:result")})
        else:
            channel.reply({"id": rid, "error": {"type": "ValueError", "message": f"unknown op {op!r}"}})


def apply_limits(memory_mb: int | None, cpu_seconds: float | None, processes: int | None,
                 file_mb: int | None) -> None:
    """Lower this process's limits (never raises them; soft = hard)."""
    wanted = {resource.RLIMIT_AS: memory_mb and memory_mb << 20,
              resource.RLIMIT_CPU: cpu_seconds and max(1, int(cpu_seconds + 0.999)),
              resource.RLIMIT_NPROC: processes, resource.RLIMIT_FSIZE: file_mb and file_mb << 20,
              resource.RLIMIT_CORE: 0}
    for which, value in wanted.items():
        if value is None:
            continue
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the worker (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m pneumo_lib.assignments.runner")
    parser.add_argument("notebook")
    parser.add_argument("--assignment", required=True)
    parser.add_argument("--out-fd", type=int, required=True, help="pipe for events and answers")
    parser.add_argument("--in-fd", type=int, required=True, help="pipe the grader's requests arrive on")
    parser.add_argument("--cell-timeout", type=float, default=300.0)
    parser.add_argument("--memory-mb", type=int, default=None, help="address-space limit (MiB)")
    parser.add_argument("--cpu-seconds", type=float, default=None)
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--file-mb", type=int, default=None)
    parser.add_argument("--skip-cells", default="", help="comma-separated code-cell indices")
    args = parser.parse_args(argv)

    apply_limits(args.memory_mb, args.cpu_seconds, args.processes, args.file_mb)
    channel = Channel(args.out_fd, args.in_fd)
    import nbformat
    from IPython.core.interactiveshell import InteractiveShell

    from pneumo_lib.assignments.notebooks import load_assignment

    nb = nbformat.read(args.notebook, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code"]
    skip_cells = {int(i) for i in args.skip_cells.split(",") if i}
    shell = InteractiveShell.instance()
    channel.emit("start", cells=len(cells))
    run_cells(shell, cells, skip_cells, args.cell_timeout, channel)
    assignment = load_assignment(args.assignment)
    seconds = {}
    for q in assignment.questions:
        value = q._cpu_seconds
        seconds[q.qid] = float(value) if isinstance(value, (int, float)) else None
    channel.emit("ready", cpu_seconds=seconds)
    serve(channel, shell.user_ns, args.cell_timeout)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
