"""Kaggle download end-to-end: the real ``kaggle`` client against a stand-in server on loopback.

The client's ``--local`` argument selects ``KaggleEnv.LOCAL``; the test points that
endpoint at the stand-in's port. The stand-in speaks the two RPCs the download uses
(``IntrospectToken`` for access tokens, ``DownloadDataset`` answered with a redirect
to the archive) and can misbehave on request: reject credentials, send a truncated
archive, cut the transfer short, or serve a dataset with the wrong counts.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from _data_helpers import TINY_COUNTS, make_tiny, tree_digest
from kagglesdk.kaggle_env import KaggleEnv, _env_to_endpoint

from pneumo_lib.data import kaggle
from pneumo_lib.data.kaggle import KaggleDownloadError, download_kaggle

USER, KEY, TOKEN = "tester", "secret-key", "good-token"


def _archive(tiny: Path, *, drop: int = 0) -> bytes:
    """A zip shaped like Kaggle's: chest_xray/, a nested chest_xray/chest_xray/ copy, __MACOSX junk."""
    buf = io.BytesIO()
    files = sorted(p for p in tiny.rglob("*") if p.is_file())
    with zipfile.ZipFile(buf, "w") as z:
        for prefix in ("chest_xray/", "chest_xray/chest_xray/"):
            for p in files[drop:]:
                z.write(p, prefix + p.relative_to(tiny).as_posix())
        z.writestr("__MACOSX/chest_xray/._train", b"junk")
        z.writestr("chest_xray/train/NORMAL/.DS_Store", b"\0\0\0\1Bud1")
    return buf.getvalue()


class StandIn(BaseHTTPRequestHandler):
    archive = b""
    mode = "ok"  # ok | truncated | cut | missing
    requests_seen: list[str] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _json(self, status: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.requests_seen.append(self.path)
        length = int(self.headers.get("Content-Length", 0))
        request = json.loads(self.rfile.read(length) or b"{}")
        if self.path.endswith("/security.OAuthService/IntrospectToken"):
            ok = request.get("token") == TOKEN
            return self._json(200, {"active": ok, "username": USER if ok else ""})
        if self.path.endswith("/datasets.DatasetApiService/DownloadDataset"):
            auth = self.headers.get("Authorization", "")
            basic = "Basic " + base64.b64encode(f"{USER}:{KEY}".encode()).decode()
            if auth not in (basic, f"Bearer {TOKEN}"):
                return self._json(401, {"code": 401, "message": "Unauthenticated"})
            if request.get("datasetSlug") != "chest-xray-pneumonia":
                return self._json(404, {"code": 404, "message": "Not found"})
            self.send_response(302)
            self.send_header("Location", "/blobs/chest-xray-pneumonia.zip")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return self._json(404, {"code": 404, "message": "no such RPC"})

    def do_GET(self):
        self.requests_seen.append(self.path)
        data = self.archive
        if self.mode == "truncated":
            data = data[: len(data) * 2 // 3]
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(self.archive) if self.mode == "cut" else len(data)))
        self.send_header("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if self.mode == "cut" else data)
        if self.mode == "cut":
            self.wfile.flush()
            self.close_connection = True


@pytest.fixture(scope="module")
def tiny_archive(tmp_path_factory):
    tiny = make_tiny(tmp_path_factory.mktemp("kaggle") / "src", seed=6, size=40)
    return tiny, _archive(tiny), _archive(tiny, drop=1)


@pytest.fixture
def server(tiny_archive, monkeypatch, tmp_path):
    StandIn.archive, StandIn.mode, StandIn.requests_seen = tiny_archive[1], "ok", []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setitem(_env_to_endpoint, KaggleEnv.LOCAL, f"http://127.0.0.1:{httpd.server_port}")
    # No real credentials or config leak in from the machine running the tests.
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _download(out: Path, **kwargs):
    return download_kaggle(out, expected=TINY_COUNTS, retries=0, api=kaggle.kaggle_api(["--local"]), **kwargs)


def test_download_with_username_and_key(server, creds, tiny_archive, tmp_path):
    folder = _download(tmp_path / "data")
    assert folder == tmp_path / "data" / "chest_xray"
    assert kaggle.count_images(folder) == TINY_COUNTS
    # Same images, same bytes as the source; nothing else left next to the dataset.
    src = tiny_archive[0]
    got = tree_digest(folder)
    assert got.pop("train/NORMAL/.DS_Store") and got == tree_digest(src)  # the outer copy
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["chest_xray"]
    assert any(p.endswith("DownloadDataset") for p in StandIn.requests_seen)


def test_download_with_an_access_token(server, tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    assert kaggle.count_images(_download(tmp_path / "data")) == TINY_COUNTS


def test_kaggle_json_in_the_config_folder(server, tmp_path, monkeypatch):
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "kaggle.json").write_text(json.dumps({"username": USER, "key": KEY}))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config))
    monkeypatch.setattr(kaggle.kaggle_api().__class__, "config", str(config / "kaggle.json"))
    assert kaggle.credentials_source() == str(config / "kaggle.json")
    assert kaggle.count_images(_download(tmp_path / "data")) == TINY_COUNTS


@pytest.fixture
def creds(monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", KEY)


def _fails_installing_nothing(out: Path, message: str) -> None:
    with pytest.raises(KaggleDownloadError, match=message):
        _download(out)
    assert not out.exists()  # not even an empty folder is left behind


def test_no_credentials_says_how_to_get_them(server, tmp_path):
    _fails_installing_nothing(tmp_path / "data", "No Kaggle credentials.*kaggle.com/settings")
    assert StandIn.requests_seen == []


def test_wrong_key_is_rejected_with_advice(server, tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", "wrong")
    _fails_installing_nothing(tmp_path / "data", "rejected the credentials \\(HTTP 401\\)")


def test_wrong_credentials_leave_no_empty_default_folder(server, tmp_path, monkeypatch):
    monkeypatch.setenv("PNEUMO_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", "wrong")
    with pytest.raises(KaggleDownloadError, match="rejected the credentials"):
        _download(None)
    assert not (tmp_path / "d").exists()
    (tmp_path / "d").mkdir()  # a data folder that existed before stays
    with pytest.raises(KaggleDownloadError):
        _download(None)
    assert (tmp_path / "d").is_dir() and list((tmp_path / "d").iterdir()) == []


def test_invalid_token_ends_in_our_message_not_exit(server, tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_API_TOKEN", "expired-token")
    # The client finds no valid credential and calls exit(1); the kernel must survive.
    _fails_installing_nothing(tmp_path / "data", "no usable credentials")


def test_network_failure(server, creds, tmp_path, monkeypatch):
    port = server.server_port
    server.shutdown()
    server.server_close()
    monkeypatch.setitem(_env_to_endpoint, KaggleEnv.LOCAL, f"http://127.0.0.1:{port}")
    _fails_installing_nothing(tmp_path / "data", "Could not reach Kaggle")


@pytest.mark.parametrize("mode, message", [
    ("truncated", "truncated or corrupt"),
    ("cut", "cut short|Could not reach"),
])
def test_truncated_archives_install_nothing(server, creds, tmp_path, mode, message):
    StandIn.mode = mode
    _fails_installing_nothing(tmp_path / "data", message)


def test_wrong_counts_install_nothing(server, creds, tiny_archive, tmp_path):
    StandIn.archive = tiny_archive[2]  # one image missing
    _fails_installing_nothing(tmp_path / "data", "incomplete: counts")


def test_existing_dataset_needs_force_and_survives_a_failed_replacement(server, creds, tmp_path):
    folder = _download(tmp_path / "data")
    before = tree_digest(folder)
    with pytest.raises(FileExistsError, match="force"):
        _download(tmp_path / "data")
    StandIn.mode = "truncated"
    with pytest.raises(KaggleDownloadError):
        _download(tmp_path / "data", force=True)
    assert tree_digest(folder) == before
    StandIn.mode = "ok"
    shutil.rmtree(folder / "test")
    assert kaggle.count_images(_download(tmp_path / "data", force=True)) == TINY_COUNTS
