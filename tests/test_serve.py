"""``pneumo serve``: arguments, early and clear failures, the app notebook shipped in the wheel."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pneumo_lib import app, cli


@pytest.fixture(autouse=True)
def _served_environment_is_restored(monkeypatch):
    """``serve`` exports the chosen model to Voila's kernels through ``os.environ``; undo that
    after every test here, so that later tests (the app page's) do not inherit a notice."""
    for name in (app.MODEL_ENV, app.NOTE_ENV, app.NOTICE_ENV, "JUPYTER_PATH"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:  # delenv of an absent variable records nothing to undo, so set it first
            monkeypatch.setenv(name, "")
            monkeypatch.delenv(name)


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
    """Kernels the server runs, and the RSS of the server and its kernels (MiB).

    A kernel is an ``ipykernel_launcher`` process whose parent is not one: a kernel's own
    short-lived child (forked, not yet exec'd, it shows its parent's command line) is not
    another kernel.
    """
    import psutil

    server = psutil.Process(proc.pid)
    rss, launchers = 0, {}
    for p in [server, *server.children(recursive=True)]:
        try:
            rss += p.memory_info().rss
            if "ipykernel_launcher" in " ".join(p.cmdline()):
                launchers[p.pid] = p.ppid()
        except psutil.NoSuchProcess:
            pass
    kernels = sum(1 for parent in launchers.values() if parent not in launchers)
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
    # A refused request logs "403 GET ..." or "403 POST ..." (a bare "403" can be part of a kernel id).
    assert not __import__("re").search(r"\b403 (GET|POST) ", log_path.read_text())
    with capsys.disabled():
        print(f"\n[load] 20 visits (8 at once, then 2 x 6 at once closing their tabs), cap {LOAD_CAP}: "
              f"peak {peak[0]} kernels, {left_open} left open then culled after {LOAD_IDLE} s idle, "
              f"{kernels} at the end; server + kernels RSS {baseline:.0f} MiB before, "
              f"{peak[1]:.0f} MiB peak, {after:.0f} MiB after ({after / baseline - 1:+.1%})", end="")
    assert after <= 1.10 * baseline


# ----------------------------------------------------------------- which model is served

@pytest.fixture
def offline(tmp_path, monkeypatch, pneumo_home):
    """pip sees only an empty local folder (the package cannot be fetched), a fresh PNEUMO_HOME,
    and the phantom CNN replaced by a small untrained one (no training in this test)."""
    from pneumo_lib import models, training

    links = tmp_path / "links"
    links.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    small = training.save_model(models.build_model("paper_cnn", 32, channels=1, weights=None),
                                tmp_path / "phantom.keras", {"data": {"source": "phantom"}})
    monkeypatch.setattr(app, "default_model", lambda profile="quick": (small, "Model: the phantom stand-in."))
    return small


def test_offline_without_model_serves_the_phantom_cnn_with_a_notice_and_one_terminal_line(offline, capsys):
    chosen = app.served_model()
    assert (chosen.kind, chosen.path, chosen.notice) == (app.PHANTOM, offline, app.PHANTOM_NOTICE)
    assert "its answers on a real chest X-ray mean nothing" in chosen.notice
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("pneumo serve: note:")]
    assert len(lines) == 1
    assert lines[0].startswith(app.FALLBACK_MESSAGE.split("{")[0])
    assert "pneumonia-model-package==0.3.0" in lines[0] and "pip download --no-deps" in lines[0]


def test_offline_the_command_serves_the_fallback_and_is_not_an_error(offline, monkeypatch, capsys):
    seen = {}

    class FakeVoila:
        @staticmethod
        def launch_instance(argv, config):
            seen.update({k: os.environ[k] for k in (app.MODEL_ENV, app.NOTE_ENV, app.NOTICE_ENV)})

        @staticmethod
        def clear_instance():
            pass

    monkeypatch.setattr(app, "voila_class", lambda: FakeVoila)
    for env in (app.MODEL_ENV, app.NOTE_ENV, app.NOTICE_ENV):
        monkeypatch.delenv(env, raising=False)
    assert cli.main(["serve", "--port", str(_free_port())]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "pneumo serve: note: serving the phantom-trained CNN instead of the real-data" in out
    assert f"pneumo serve: NOTICE: {app.PHANTOM_NOTICE}" in out
    assert seen[app.MODEL_ENV] == str(offline) and seen[app.NOTICE_ENV] == app.PHANTOM_NOTICE


def test_model_reference_offline_is_a_one_line_error(offline, capsys):
    assert cli.main(["serve", "--model", "reference", "--port", str(_free_port())]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("pneumo: error: The pretrained Xception networks come from the PyPI "
                                              "package pneumonia-model-package==0.3.0")


def test_preprocess_and_input_size_apply_only_to_a_model_path(capsys):
    assert cli.main(["serve", "--preprocess", "tf", "--port", str(_free_port())]) == 2
    assert "--preprocess and --input-size describe a model given with --model PATH" in capsys.readouterr().err
    assert app.preprocess_name("xception") == "tf" and app.preprocess_name("vgg16") == "caffe"
    assert app.preprocess_name("paper_cnn") == "unit"
    with pytest.raises(ValueError, match=r"--preprocess inception: unknown; choose one of unit, tf, caffe, torch"):
        app.preprocess_name("inception")


def _mean_model(path, size=None):
    """P(PNEUMONIA) = sigmoid(10 * mean pixel): known answers for every preprocessing."""
    import numpy as np

    from pneumo_lib import training
    from pneumo_lib._tf import keras

    inputs = keras.Input((size, size, 1))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(1, activation="sigmoid", name="head")
    model = keras.Model(inputs, dense(x), name="mean_model")
    dense.set_weights([np.full((1, 1), 10.0, np.float32), np.zeros(1, np.float32)])
    model.save(path)
    training.card_path(path).write_text(json.dumps({"evaluation": {"threshold": 0.7}, "trained_on": "nothing at all"}))
    return path


def test_a_model_path_gets_its_preprocessing_from_the_command_line_or_its_card(tmp_path):
    import numpy as np

    from pneumo_lib import decision, training

    any_size = _mean_model(tmp_path / "mean.keras")
    with pytest.raises(ValueError, match="takes images of any size and its card names none; give one with --input-size"):
        app.given_model(any_size)
    gray = np.full((1, 24, 24, 1), 0.75, np.float32)
    for kind, expected in (("unit", 0.75), ("tf", 0.5), ("xception", 0.5)):
        served = app.given_model(any_size, preprocess=kind, input_size=24, folder=tmp_path / kind)
        model = training.load_model(served.path)  # safe mode: only built-in layers
        assert model.input_shape == (None, 24, 24, 1)
        p = float(model.predict(gray, verbose=0)[0, 0])
        assert p == pytest.approx(1 / (1 + np.exp(-10 * expected)), abs=1e-5)
        assert decision.model_threshold(model) == 0.7, "the card's threshold is kept"
        assert "Trained on: nothing at all. Input: 24 x 24 px, 1 channel (gray)" in served.note
        assert served.note.endswith(app.NOT_A_MEDICAL_DEVICE)
    # The card can say it instead: preprocess and input size from the card.
    training.card_path(any_size).write_text(json.dumps({"preprocess": "tf", "input_size": 20}))
    served = app.given_model(any_size, folder=tmp_path / "card")
    assert training.load_model(served.path).input_shape == (None, 20, 20, 1) and "[-1, 1]" in served.note
    fixed = _mean_model(tmp_path / "fixed.keras", size=16)
    assert app.given_model(fixed).path == fixed.resolve(), "nothing to add: served as it is"
    with pytest.raises(ValueError, match=r"--input-size 32 contradicts --model fixed.keras, which takes 16 x 16 px"):
        app.given_model(fixed, input_size=32)


REFERENCE_CACHED = pytest.mark.skipif(
    "not __import__('pneumo_lib.pretrained', fromlist=['x']).reference_available()",
    reason="the real-data classifier is not cached in PNEUMO_HOME (pneumo data sample fetches it)")


@REFERENCE_CACHED
def test_without_model_the_real_data_classifier_is_served_and_the_page_says_what_it_is(tmp_path, capsys):
    import numpy as np

    from pneumo_lib import data, pretrained, training, uploads, widgets

    chosen = app.served_model()
    assert chosen.kind == app.REFERENCE and chosen.notice == ""
    assert "pneumo serve: note" not in capsys.readouterr().out
    for words in ("trained on real Kaggle X-rays", "Input: 150 x 150 px, 3 channels", "not a medical device",
                  "keras.applications.xception.preprocess_input"):
        assert words in chosen.note
    model = training.load_model(chosen.path)
    assert model.input_shape == (None, 150, 150, 3) and chosen.card["sha256"] == pretrained.MODEL_SHA256
    # Its page: uncalibrated and the default referral level, said so.
    note = widgets.decision_note(model) + " " + widgets.referral_page_note(model)
    assert "not calibrated: the model card holds no fitted temperature" in note
    assert "the model card holds no referral level" in note
    # The package's own model given as a path with --preprocess xception answers exactly the same.
    raw = app.given_model(pretrained.reference_model_file(fetch=False), preprocess="xception", folder=tmp_path)
    raw_model = training.load_model(raw.path)
    files = sorted(data.ensure_sample().rglob("*.jpeg"))[:4]
    images = np.stack([uploads.read_upload(uploads.Upload(f.name, f.read_bytes()), 150, 3) for f in files])
    served_p = widgets.probabilities(model, images)
    assert widgets.probabilities(raw_model, images) == pytest.approx(served_p, abs=1e-5)
    # Grad-CAM finds the layer inside the nested backbone of both.
    e = widgets.explain(raw_model, images[0])
    assert e.heatmap.shape == (150, 150) and e.heatmap.max() == pytest.approx(1.0)
