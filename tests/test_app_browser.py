"""The web app end to end: ``pneumo serve`` driven by headless Debian Chromium through Playwright.

Two servers run without ``--model``. The first cannot fetch the real-data classifier (pip sees
an empty local index and its PNEUMO_HOME holds no copy of the package), so it falls back, as an
offline laptop does, to the quick-profile scratch CNN from the model cache (training it first on
a fresh checkout, as CI does), with the notice that its answers on real X-rays mean nothing.
The second serves the real-data Xception classifier (pneumonia-model-package, fetched with pip
when it is not cached) and is given the 16 real X-rays. Every answer on the page is checked
against the library's own answer for the same bytes, computed here in the test process, and
against the true class of images the model classifies confidently. Upload-to-overlay times are
printed (a benchmark, not an assertion). Needs /usr/bin/chromium (``make test`` installs it when
run as root); skipped, saying so, without it.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from _serve_helpers import free_port, running_server
from _upload_files import dicom_monochrome1, png_bytes, rgba
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: Seconds to wait for the server: on an empty model cache it trains the model first.
STARTUP_TIMEOUT = 900
PAGE_TIMEOUT_MS = 180_000
ANSWER_TIMEOUT_MS = 90_000

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason="browser test needs Debian's chromium at /usr/bin/chromium "
    "(`make test` installs it when run as root; or: apt-get install chromium)")


def _offline_home(folder: Path) -> Path:
    """A PNEUMO_HOME sharing this one's data and model cache but holding no copy of the package."""
    from pneumo_lib import paths

    home = paths.pneumo_home()
    offline = folder / "offline-home"
    offline.mkdir()
    for name in ("data", "models"):
        (home / name).mkdir(parents=True, exist_ok=True)
        (offline / name).symlink_to(home / name)
    return offline


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``pneumo serve --port N`` on loopback, unable to fetch the real-data classifier; yields its
    URL, the model file it serves, the process and its log; stopped afterwards."""
    port = free_port()
    folder = tmp_path_factory.mktemp("serve")
    (folder / "links").mkdir()
    offline = {"PNEUMO_HOME": str(_offline_home(folder)), "PIP_CONFIG_FILE": "/dev/null", "PIP_NO_INDEX": "1",
               "PIP_FIND_LINKS": str(folder / "links")}
    log_path = folder / "serve.log"
    with running_server([], port, log_path, STARTUP_TIMEOUT, env=offline) as proc:
        served = re.search(r"^pneumo serve: model file (.+\.keras)$", log_path.read_text(), re.MULTILINE)
        yield f"http://127.0.0.1:{port}/", Path(served.group(1)), proc, log_path


@pytest.fixture(scope="module")
def library(server):
    """The served model and the library's answers, computed in this process."""
    from pneumo_lib import app, data, training, uploads, widgets

    model = training.load_model(server[1])
    threshold = app.decision_threshold(server[1])
    size, channels = model.input_shape[1], model.input_shape[-1]

    def answer(name: str, content: bytes) -> str:
        image = uploads.read_upload(uploads.Upload(name, content), size, channels)
        explanation = widgets.explain(model, image, threshold=threshold)
        return f"{name}: {explanation.summary(calibration=True)} (uploaded)"

    test_dir = data.ensure_dataset("quick") / "test"
    confident = {}
    for label, cls in enumerate(data.CLASSES):
        files = sorted((test_dir / cls).iterdir())[:40]
        p = widgets.probabilities(model, data.load_images(files, size, channels))
        order = np.argsort(-p if label else p)  # most confident first
        confident[cls] = [files[i] for i in order[:2]]
    return answer, confident


@pytest.fixture(scope="module")
def referral_line(server):
    """The library's referral line for an upload (flag or uncertainty note), computed in this process."""
    from pneumo_lib import app, training, uploads, widgets

    model = training.load_model(server[1])
    threshold = app.decision_threshold(server[1])
    size, channels = model.input_shape[1], model.input_shape[-1]

    def line(name: str, content: bytes) -> str:
        image = uploads.read_upload(uploads.Upload(name, content), size, channels)
        return widgets.explain(model, image, threshold=threshold).referral_note()

    return line


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield pw, chromium
        chromium.close()


def _open(chromium, url):
    page = chromium.new_page()
    page.goto(url, timeout=PAGE_TIMEOUT_MS)
    page.wait_for_selector("button.widget-upload", timeout=PAGE_TIMEOUT_MS)
    return page


@pytest.fixture(scope="module")
def page(browser, server):
    page = _open(browser[1], server[0])
    yield page
    page.close()


def _start_upload(page, name: str, content: bytes) -> float:
    """Choose a file in the page's upload button, as a user does; returns the start time.

    The file is written to a fresh temporary folder first (the browser reads it from disk).
    """
    folder = Path(tempfile.mkdtemp(prefix="pneumo-browser-"))
    (folder / name).write_bytes(content)
    with page.expect_file_chooser() as chooser:
        page.click("button.widget-upload")
    start = time.perf_counter()
    chooser.value.set_files(str(folder / name))
    return start


def _wait_overlay(page, name: str) -> str:
    """Wait until the overlay of ``name`` is decoded on screen; returns the result line."""
    page.wait_for_function(
        """name => { const img = document.querySelector('img.pneumo-overlay');
                     return img && img.alt.endsWith(': ' + name) && img.complete && img.naturalWidth > 0; }""",
        arg=name, timeout=ANSWER_TIMEOUT_MS)
    return page.inner_text(".pneumo-result")


def _upload(page, name: str, content: bytes) -> tuple[str, float]:
    start = _start_upload(page, name, content)
    text = _wait_overlay(page, name)
    return text, time.perf_counter() - start


def _upload_error(page, name: str, content: bytes) -> str:
    _start_upload(page, name, content)
    error = page.wait_for_selector(f".pneumo-error:has-text('{name}')", timeout=ANSWER_TIMEOUT_MS)
    return error.inner_text()


def test_offline_the_page_says_the_phantom_cnn_answers_and_that_its_answers_mean_nothing(page, server):
    from pneumo_lib import app

    log = server[3].read_text()
    fallback = [line for line in log.splitlines() if line.startswith("pneumo serve: note:")]
    assert len(fallback) == 1 and "pneumonia-model-package==0.3.0" in fallback[0], log
    assert page.is_visible(".pneumo-model-notice")
    assert page.inner_text(".pneumo-model-notice").strip().lstrip("\u26a0").strip() == app.PHANTOM_NOTICE
    note = page.inner_text(".pneumo-model-note")
    assert "quick-profile scratch CNN" in note and "phantom" in note and "not on real X-rays" in note
    assert "not a medical device" in note and re.search(r"Input: \d+ x \d+ px", note)
    assert "Decision threshold" in note
    assert "Probabilities are uncalibrated" in note or "Probabilities are calibrated by temperature scaling" in note
    assert "flagged for a radiologist's reading (referral level" in note


def test_phantom_and_kaggle_uploads_show_prediction_and_overlay(page, library, referral_line, capsys):
    answer, confident = library
    phantom = confident["PNEUMONIA"][0]
    kaggle = _kaggle_xray()
    times = {}
    for path in (phantom, kaggle):
        text, seconds = _upload(page, path.name, path.read_bytes())
        assert text == answer(path.name, path.read_bytes())
        # The referral line: the "Uncertain: refer to a radiologist" flag or the uncertainty note, as the library says.
        shown = page.inner_text(".pneumo-refer, .pneumo-certainty").replace("\u2691", "").strip()
        assert shown == referral_line(path.name, path.read_bytes())
        times[path.name] = seconds
        link = page.get_attribute("a.pneumo-download", "href")
        assert link.startswith("data:image/png;base64,") and len(link) > 1000
    assert f"{phantom.name}: PNEUMONIA" in answer(phantom.name, phantom.read_bytes())
    with capsys.disabled():
        for name, seconds in times.items():
            print(f"\n[benchmark] upload to overlay on screen: {seconds:.2f} s ({name})", end="")


def test_bad_uploads_get_readable_errors_and_the_page_keeps_serving(page, library):
    answer, confident = library
    jpeg = confident["PNEUMONIA"][0].read_bytes()
    assert "is not a readable image" in _upload_error(page, "notes.jpg", b"Dear diary,\n" * 50)
    assert "truncated" in _upload_error(page, "cut.jpeg", jpeg[: len(jpeg) // 3])
    huge = b"\x89PNG\r\n\x1a\n" + bytes(21 * 2**20)
    assert "the limit is 20 MB" in _upload_error(page, "huge.png", huge)
    assert "not a JPEG, PNG or DICOM" in _upload_error(page, "notes.txt", b"hello")
    text, _ = _upload(page, "again.jpeg", jpeg)
    assert text == answer("again.jpeg", jpeg)


def _kaggle_xray():
    from pneumo_lib import paths
    from pneumo_lib.data.sample import download_sample

    sample_dir = paths.dataset_dir("sample")
    if not sample_dir.is_dir():
        download_sample()
    return sample_dir / "val" / "PNEUMONIA" / "person1946_bacteria_4874.jpeg"


def test_uploads_that_are_not_chest_xrays_are_answered_only_under_a_warning(page, library):
    answer, _ = library
    dot = png_bytes(np.full((1, 1), 128, np.uint8))
    noise = png_bytes(np.random.default_rng(0).integers(0, 256, (256, 256), dtype=np.uint8))
    for name, content, reason in (("dot.png", dot, "It is too small for a radiograph (1x1 px"),
                                  ("noise.png", noise, "It looks like noise, not anatomy")):
        text, _ = _upload(page, name, content)
        assert text == answer(name, content)
        assert page.is_visible(".pneumo-warning")
        warning = page.inner_text(".pneumo-warning")
        assert "This does not look like a chest X-ray" in warning and reason in warning, warning
    kaggle = _kaggle_xray()
    text, _ = _upload(page, kaggle.name, kaggle.read_bytes())
    assert text == answer(kaggle.name, kaggle.read_bytes())
    assert page.locator(".pneumo-warning").count() == 0


def test_an_upload_over_the_server_message_limit_is_refused_in_the_browser(page, library):
    """70 MB is above the websocket limit (64 MiB): without the page's guard it never reached the
    kernel and the page silently kept the previous result."""
    answer, confident = library
    jpeg = confident["PNEUMONIA"][0].read_bytes()
    _upload(page, "before.jpeg", jpeg)
    message = _upload_error(page, "giant.png", b"\x89PNG\r\n\x1a\n" + bytes(70 * 2**20))
    assert message == ("Could not explain giant.png: giant.png is 70.0 MB; the limit is 20 MB. Downscale or "
                       "compress the image first. (Refused in the browser: nothing was sent.)")
    assert page.locator("img.pneumo-overlay").count() == 0 and page.locator(".pneumo-result").count() == 0
    text, _ = _upload(page, "after.jpeg", jpeg)
    assert text == answer("after.jpeg", jpeg)


def test_16bit_png_rgba_png_and_monochrome1_dicom_answer_like_the_jpeg(page, library):
    answer, confident = library
    gray8 = np.asarray(Image.open(confident["PNEUMONIA"][0]).convert("L"))
    variants = {
        "scan16.png": png_bytes(gray8.astype(np.uint16) * 257),
        "scan-rgba.png": png_bytes(rgba(gray8)),
        "scan.dcm": dicom_monochrome1(gray8),
    }
    for name, content in variants.items():
        text, _ = _upload(page, name, content)
        assert text == answer(name, content)
        assert text.startswith(f"{name}: PNEUMONIA"), text


def test_four_browsers_uploading_at_once_are_all_answered(page, browser, server, library, capsys):
    """The module's browser plus three more Chromium processes, each with its own page and kernel."""
    answer, confident = library
    pw, _ = browser
    files = confident["NORMAL"] + confident["PNEUMONIA"]
    others = [pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS) for _ in files[1:]]
    try:
        start = time.perf_counter()
        pages = [page] + [b.new_page() for b in others]
        for p in pages[1:]:
            p.goto(server[0], wait_until="commit", timeout=PAGE_TIMEOUT_MS)
        for p in pages[1:]:
            p.wait_for_selector("button.widget-upload", timeout=PAGE_TIMEOUT_MS)
        loaded = time.perf_counter() - start
        starts = [_start_upload(p, f.name, f.read_bytes()) for p, f in zip(pages, files)]
        texts = [_wait_overlay(p, f.name) for p, f in zip(pages, files)]
        answered = time.perf_counter() - min(starts)
    finally:
        for b in others:
            b.close()
    for text, path in zip(texts, files):
        assert text == answer(path.name, path.read_bytes())
        assert text.startswith(f"{path.name}: {path.parent.name} ")
    with capsys.disabled():
        print(f"\n[benchmark] 4 browsers: 3 new pages ready in {loaded:.1f} s, all 4 uploads answered "
              f"{answered:.2f} s after the first", end="")


def _kernel_running(server_proc, kernel_id: str) -> bool:
    """Whether the server still runs the kernel ``kernel_id`` (its connection file names it)."""
    import psutil

    for child in psutil.Process(server_proc.pid).children(recursive=True):
        try:
            if kernel_id in " ".join(child.cmdline()):
                return True
        except psutil.NoSuchProcess:
            pass
    return False


def test_closing_a_tab_ends_its_kernel_at_once(browser, server):
    """The page's beforeunload beacon shuts its kernel down (it was refused with 403 before).

    Leaving the page fires the same beforeunload as closing the tab; Playwright's own
    ``page.close`` ends the page before Chromium sends the beacon, which real tabs do not.
    """
    page = _open(browser[1], server[0])
    kernel_id = re.search(r'"kernelId":\s*"([0-9a-f-]+)"', page.content()).group(1)
    assert _kernel_running(server[2], kernel_id)
    page.goto("about:blank")
    page.close()
    deadline = time.monotonic() + 60
    while _kernel_running(server[2], kernel_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _kernel_running(server[2], kernel_id), "the closed tab's kernel is still running"
    log = server[3].read_text()
    assert "403 POST /voila/api/shutdown" not in log and "_xsrf' argument missing" not in log


# ----------------------------------------------------------------- the real-data classifier

@pytest.fixture(scope="module")
def reference_server(tmp_path_factory):
    """``pneumo serve`` without ``--model`` where the real-data classifier can be had (fetched with
    pip into PNEUMO_HOME when it is not cached there); yields URL, served file, process, log."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve-reference") / "serve.log"
    with running_server([], port, log_path, STARTUP_TIMEOUT) as proc:
        served = re.search(r"^pneumo serve: model file (.+\.keras)$", log_path.read_text(), re.MULTILINE)
        yield f"http://127.0.0.1:{port}/", Path(served.group(1)), proc, log_path


@pytest.fixture(scope="module")
def reference_page(browser, reference_server):
    page = _open(browser[1], reference_server[0])
    yield page
    page.close()


def test_the_real_data_classifier_answers_real_xrays_with_prediction_and_overlay(reference_page, reference_server,
                                                                               capsys):
    from pneumo_lib import app, data, pretrained, training, uploads, widgets

    log = reference_server[3].read_text()
    assert "pneumo serve: note:" not in log and reference_server[1].name == app.REFERENCE_APP_FILE
    page = reference_page
    assert page.locator(".pneumo-model-notice").count() == 0
    note = page.inner_text(".pneumo-model-note")
    for words in ("trained on real Kaggle X-rays", "Input: 150 x 150 px, 3 channels", "not a medical device",
                  pretrained.PACKAGE, "not calibrated: the model card holds no fitted temperature",
                  "the model card holds no referral level"):
        assert words in note, (words, note)
    model = training.load_model(reference_server[1])
    threshold = app.decision_threshold(reference_server[1])
    files = sorted(data.ensure_sample().rglob("*.jpeg"))
    images = np.stack([uploads.read_upload(uploads.Upload(f.name, f.read_bytes()), 150, 3) for f in files])
    labels = np.array([f.parent.name == "PNEUMONIA" for f in files], int)
    p = widgets.probabilities(model, images)
    right = int(((p >= threshold).astype(int) == labels).sum())
    assert right >= 12, f"the real-data classifier got {right} of the 16 real X-rays right"  # 13 measured
    chosen = [f for f in files if f.parent.name == "NORMAL"][:2] + [f for f in files if f.parent.name == "PNEUMONIA"][:2]
    times = {}
    for path in chosen:
        content = path.read_bytes()
        text, seconds = _upload(page, path.name, content)
        expected = widgets.explain(model, uploads.read_upload(uploads.Upload(path.name, content), 150, 3),
                                   threshold=threshold)
        assert text == f"{path.name}: {expected.summary(calibration=True)} (uploaded)"
        assert page.get_attribute("img.pneumo-overlay", "alt") == f"Grad-CAM overlay: {path.name}"
        assert page.get_attribute("a.pneumo-download", "href").startswith("data:image/png;base64,")
        times[path.name] = seconds
    with capsys.disabled():
        for name, seconds in times.items():
            print(f"\n[benchmark] upload to overlay on screen, real-data Xception (150 px): {seconds:.2f} s ({name})",
                  end="")
        print(f"\n[benchmark] real-data Xception: median {np.median(list(times.values())):.2f} s, "
              f"max {max(times.values()):.2f} s over {len(times)} real X-rays; {right} of 16 right", end="")
