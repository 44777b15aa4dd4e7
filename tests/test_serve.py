"""``pneumo serve``: arguments, early and clear failures, the app notebook shipped in the wheel."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pneumo_lib import app, cli


def test_help_names_the_options_and_the_loopback_default():
    parser = cli.build_parser()
    args = parser.parse_args(["serve"])
    assert (args.model, args.port, args.host) == (None, app.DEFAULT_PORT, "127.0.0.1")
    args = parser.parse_args(["serve", "--model", "m.keras", "--port", "9000", "--host", "0.0.0.0"])
    assert (args.model, args.port, args.host) == ("m.keras", 9000, "0.0.0.0")


@pytest.mark.parametrize("argv, message", [
    (["--model", "nowhere/model.keras"], "--model nowhere/model.keras: no such file."),
    (["--port", "0"], "--port must be between 1 and 65535, got 0."),
    (["--port", "70000"], "--port must be between 1 and 65535, got 70000."),
])
def test_bad_arguments_fail_in_one_line(argv, message, capsys):
    assert cli.main(["serve", *argv]) == 2
    assert capsys.readouterr().err.strip() == f"pneumo: error: {message}"


def test_a_model_that_is_not_a_keras_file_is_refused(tmp_path, capsys):
    weights = tmp_path / "model.h5"
    weights.write_bytes(b"HDF")
    assert cli.main(["serve", "--model", str(weights)]) == 2
    assert "expected a Keras 3 '.keras' file, got '.h5'" in capsys.readouterr().err


def test_a_truncated_model_file_fails_the_command_not_the_page(tmp_path, capsys):
    model = tmp_path / "cut.keras"
    model.write_bytes(b"PK\x03\x04 truncated")
    assert cli.main(["serve", "--model", str(model), "--port", str(_free_port())]) == 2
    assert "is corrupted or truncated" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_busy_port_is_refused_before_anything_starts(tmp_path, capsys):
    model = tmp_path / "m.keras"
    model.write_bytes(b"PK")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["serve", "--model", str(model), "--port", str(port)]) == 2
    assert f"Port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err


def test_voila_binds_where_asked_and_never_hops_ports():
    argv = app.voila_argv("127.0.0.1", 8123)
    assert argv[0] == str(app.APP_NOTEBOOK)
    assert {"--Voila.ip=127.0.0.1", "--port=8123", "--Voila.port_retries=0", "--no-browser"} <= set(argv)


def test_the_app_notebook_ships_in_the_wheel(tmp_path):
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "-w", str(tmp_path), str(root)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("pneumo_lib-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        shipped = json.loads(z.read("pneumo_lib/app/explorer_app.ipynb"))
    code = "".join("".join(c["source"]) for c in shipped["cells"] if c["cell_type"] == "code")
    assert "app_from_environment()" in code
    assert shipped == json.loads(app.APP_NOTEBOOK.read_text())


def test_bad_kernel_limits_fail_in_one_line(capsys):
    assert cli.main(["serve", "--max-kernels", "0", "--port", str(_free_port())]) == 2
    assert capsys.readouterr().err.strip() == "pneumo: error: --max-kernels must be at least 1, got 0."
    assert cli.main(["serve", "--idle-timeout", "0", "--port", str(_free_port())]) == 2
    assert "--idle-timeout must be positive" in capsys.readouterr().err


def test_default_cap_follows_memory():
    assert app.default_max_kernels(24 << 30) == 27
    assert app.default_max_kernels(512 << 20) == 1 and app.default_max_kernels(0) == 1
    config = app.voila_config(3, 120)
    assert config.MappingKernelManager.cull_idle_timeout == 120 and config.MappingKernelManager.cull_connected
    assert config.Voila.tornado_settings["pneumo_max_kernels"] == 3


# ----------------------------------------------------------------- a bounded loopback load test

LOAD_CAP = 3
LOAD_IDLE = 8


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """``pneumo serve`` of a small untrained CNN, at most 3 kernels, 8 s idle timeout."""
    from _serve_helpers import running_server

    from pneumo_lib import models, training

    folder = tmp_path_factory.mktemp("load")
    model_path = training.save_model(models.build_model("paper_cnn", 32, channels=1, weights=None),
                                     folder / "small.keras", {})
    port = _free_port()
    args = ["--model", str(model_path), "--max-kernels", str(LOAD_CAP), "--idle-timeout", str(LOAD_IDLE)]
    with running_server(args, port, folder / "serve.log", 180) as proc:
        yield f"http://127.0.0.1:{port}/", proc, folder / "serve.log"


def _kernels_and_memory(proc) -> tuple[int, float]:
    """Kernels the server runs, and the RSS of the server and its kernels (MiB)."""
    import psutil

    server = psutil.Process(proc.pid)
    rss, kernels = 0, 0
    for p in [server, *server.children(recursive=True)]:
        try:
            rss += p.memory_info().rss
            kernels += "ipykernel_launcher" in " ".join(p.cmdline())
        except psutil.NoSuchProcess:
            pass
    return kernels, rss / 2**20


def _visit(url: str, close: bool) -> tuple[int, str]:
    """GET the page as a browser would; with ``close``, then send the tab-closing beacon."""
    import http.cookiejar
    import re
    import urllib.error
    import urllib.parse
    import urllib.request

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    try:
        with opener.open(url, timeout=240) as response:
            status, html = response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")
    if close:
        kernel = re.search(r'"kernelId":\s*"([0-9a-f-]+)"', html).group(1)
        xsrf = next(c.value for c in jar if c.name == "_xsrf")
        body = urllib.parse.urlencode({"_xsrf": xsrf}).encode()
        with opener.open(urllib.request.Request(f"{url}voila/api/shutdown/{kernel}", data=body), timeout=60) as r:
            assert r.status == 204
    return status, html


def _wait_kernels(proc, at_most: int, seconds: float) -> int:
    import time

    deadline = time.monotonic() + seconds
    while True:
        kernels, _ = _kernels_and_memory(proc)
        if kernels <= at_most or time.monotonic() > deadline:
            time.sleep(2)  # the server forgets a kernel shortly after its process ends
            return kernels
        time.sleep(0.5)


def test_twenty_visits_end_with_no_kernel_left_and_memory_back(small_server, capsys):
    """8 visits at once (3 served, 5 told 'busy'), then 2 rounds of 6 at once whose served tabs close."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    url, proc, log_path = small_server
    _, baseline = _kernels_and_memory(proc)
    peak = [0, baseline]

    def visits(n: int, close: bool) -> list[tuple[int, str]]:
        with ThreadPoolExecutor(n) as pool:
            futures = [pool.submit(_visit, url, close) for _ in range(n)]
            while not all(f.done() for f in futures):
                k, m = _kernels_and_memory(proc)
                peak[:] = max(peak[0], k), max(peak[1], m)
                time.sleep(0.5)
            return [f.result() for f in futures]

    first = visits(8, close=False)
    statuses = sorted(status for status, _ in first)
    assert statuses == [200] * LOAD_CAP + [503] * (8 - LOAD_CAP), statuses
    busy = next(html for status, html in first if status == 503)
    assert "The app is busy, please try again" in busy and f"all {LOAD_CAP} of them" in busy
    left_open = _kernels_and_memory(proc)[0]
    assert left_open == LOAD_CAP  # tabs "left open" without a beacon: only the idle timeout frees them
    assert _wait_kernels(proc, 0, LOAD_IDLE + 30) == 0
    rounds = []
    for _ in range(2):
        rounds.append(sorted(status for status, _ in visits(6, close=True)))
        assert _wait_kernels(proc, 0, 30) == 0  # every closed tab ended its kernel
    assert rounds == [[200] * LOAD_CAP + [503] * (6 - LOAD_CAP)] * 2, rounds
    kernels, after = _kernels_and_memory(proc)
    assert peak[0] <= LOAD_CAP and kernels == 0
    assert "403" not in log_path.read_text()
    with capsys.disabled():
        print(f"\n[load] 20 visits (8 at once, then 2 x 6 at once closing their tabs), cap {LOAD_CAP}: "
              f"peak {peak[0]} kernels, {left_open} left open then culled after {LOAD_IDLE} s idle, "
              f"{kernels} at the end; server + kernels RSS {baseline:.0f} MiB before, "
              f"{peak[1]:.0f} MiB peak, {after:.0f} MiB after ({after / baseline - 1:+.1%})", end="")
    assert after <= 1.10 * baseline
