"""The real Kaggle sample from the PyPI wheel: verification, layout, failures."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _data_helpers import tree_digest
from PIL import Image

from pneumo_lib.data import layout, sample

PREFIX = "pneumonia_model_package/datasets/pneumonia-data/val/"
NAMES = ["NORMAL2-IM-0001-0001.jpeg", "IM-0002-0001.jpeg", "person3_bacteria_9.jpeg", "person4_virus_10.jpeg"]


def _jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16), value, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _wheel(path: Path, tamper: str | None = None, drop: str | None = None) -> dict[str, str]:
    """A wheel laid out like pneumonia-model-package's; returns the expected hashes."""
    expected = {}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(PREFIX + ".DS_Store", b"\0\0\0\1Bud1")
        z.writestr("pneumonia_model_package/__init__.py", "")
        for i, name in enumerate(NAMES):
            data = _jpeg(40 * i + 20)
            expected[name] = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")
            if name == tamper:
                data = data + b"x"
            if name != drop:
                z.writestr(PREFIX + name, data)
    return expected


def test_layout_by_class_without_ds_store(tmp_path):
    expected = _wheel(tmp_path / "p.whl")
    folder = sample.install_sample(tmp_path / "p.whl", tmp_path / "out", expected=expected)
    records = layout.list_images(folder, splits=("val",))
    assert [(r.path, r.label) for r in records] == [
        ("val/NORMAL/IM-0002-0001.jpeg", 0), ("val/NORMAL/NORMAL2-IM-0001-0001.jpeg", 0),
        ("val/PNEUMONIA/person3_bacteria_9.jpeg", 1), ("val/PNEUMONIA/person4_virus_10.jpeg", 1)]
    assert not list(folder.rglob(".DS_Store"))


@pytest.mark.parametrize("tamper, drop, message", [
    ("person3_bacteria_9.jpeg", None, "SHA-256 mismatch for person3_bacteria_9.jpeg"),
    (None, "IM-0002-0001.jpeg", "lacks 1 sample image"),
])
def test_a_wheel_that_is_not_the_published_one_installs_nothing(tmp_path, tamper, drop, message):
    expected = _wheel(tmp_path / "p.whl", tamper=tamper, drop=drop)
    with pytest.raises(sample.SampleError, match=message):
        sample.install_sample(tmp_path / "p.whl", tmp_path / "out", expected=expected)
    assert not (tmp_path / "out").exists()


def test_not_a_wheel(tmp_path):
    (tmp_path / "p.whl").write_bytes(b"garbage")
    with pytest.raises(sample.SampleError, match="not a readable wheel"):
        sample.install_sample(tmp_path / "p.whl", tmp_path / "out")


def test_existing_sample_needs_force(tmp_path):
    expected = _wheel(tmp_path / "p.whl")
    folder = sample.install_sample(tmp_path / "p.whl", tmp_path / "out", expected=expected)
    before = tree_digest(folder)
    with pytest.raises(FileExistsError, match="force"):
        sample.install_sample(tmp_path / "p.whl", tmp_path / "out", expected=expected)
    assert tree_digest(folder) == before
    sample.install_sample(tmp_path / "p.whl", tmp_path / "out", expected=expected, force=True)


def test_pip_failure_is_one_clear_error(tmp_path, monkeypatch):
    # An index on a closed loopback port: pip fails fast, without touching the network.
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(sample.SampleError, match="pip could not download .*PyPI"):
        sample.fetch_wheel(tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


REAL_WHEEL = sorted((Path(__file__).parents[1] / ".pneumo" / "downloads").glob("pneumonia_model_package-0.3.0-*.whl"))


@pytest.mark.skipif(not REAL_WHEEL, reason="the real wheel is fetched by `pneumo data sample` (make book)")
def test_the_real_wheel_gives_the_16_kaggle_val_images(tmp_path):
    folder = sample.install_sample(REAL_WHEEL[0], tmp_path / "out")
    records = layout.list_images(folder, splits=("val",))
    assert [sum(r.label == c for r in records) for c in (0, 1)] == [8, 8]
    assert {r.path.rsplit("/", 1)[1] for r in records} == set(sample.SAMPLE_IMAGES)
    patients = {r.patient for r in records if r.label == 1}
    assert "person1946" in patients and len(patients) == 7  # person1946 has two images


def test_processes_asking_for_the_sample_at_once_fetch_it_once(tmp_path, pneumo_home, monkeypatch):
    """The rehearsal and the chapters start side by side and both need the 16 real images:
    the second waits for the first's fetch and reuses it instead of replacing it under it."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from pneumo_lib import data

    expected = _wheel(tmp_path / "p.whl")
    fetches = []

    def slow_download(out, *, force=False):
        fetches.append(threading.get_ident())
        time.sleep(0.3)  # long enough for every other caller to find the folder missing
        return sample.install_sample(tmp_path / "p.whl", out, force=force, expected=expected)

    monkeypatch.setattr(sample, "SAMPLE_IMAGES", expected)
    monkeypatch.setattr(sample, "download_sample", slow_download)
    with ThreadPoolExecutor(4) as pool:
        folders = list(pool.map(lambda _: data.ensure_sample(), range(4)))
    assert len(fetches) == 1
    assert len(set(folders)) == 1
    assert sorted(r.path.split("/")[-1] for r in layout.list_images(folders[0], splits=("val",))) == sorted(NAMES)
