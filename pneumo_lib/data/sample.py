"""The 16 real images of Kaggle's ``val`` split, from a PyPI package.

The package ``pneumonia-model-package==0.3.0`` ships Kaggle's validation images
(8 NORMAL, 8 PNEUMONIA; dataset by Kermany et al. 2018, licence CC BY 4.0) inside
its wheel. ``pip download --no-deps`` fetches the wheel from any machine that
reaches PyPI; :func:`install_sample` checks every image against its SHA-256 and
lays them out as ``chest_xray/val/{NORMAL,PNEUMONIA}``. The wheel's
``.DS_Store`` files (as in real downloads) are left out.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from pneumo_lib import paths
from pneumo_lib.data.layout import CLASSES
from pneumo_lib.data.staging import replace_atomically

SAMPLE_REQUIREMENT = "pneumonia-model-package==0.3.0"
_IMAGE_DIR = "pneumonia_model_package/datasets/pneumonia-data/val/"

#: File name -> SHA-256 (URL-safe base64, as in the wheel's RECORD) of the 16 images.
SAMPLE_IMAGES: dict[str, str] = {
    "NORMAL2-IM-1427-0001.jpeg": "lf5t0k_AEO5SbkBFf_NO8FfSV8cbIqyf0xIJTU17Kjc",
    "NORMAL2-IM-1430-0001.jpeg": "ui0P95wnWNx1MxwyQt_AWwEI3zr_xUArVbbZuB9EwqA",
    "NORMAL2-IM-1431-0001.jpeg": "HqsWfNg2oVPd62Gg5Z_yGydvt5sKq3BJFgWnf_xS9Kw",
    "NORMAL2-IM-1436-0001.jpeg": "G5a4uk0nk2KjlsKGT3brPzC6kQ9jVzSR7SIDtOco9cc",
    "NORMAL2-IM-1437-0001.jpeg": "pzwGq7tHO1fJA3RCT4bw14dr29tcPtjGgeS9bwl3jDg",
    "NORMAL2-IM-1438-0001.jpeg": "Gd6vvUyxO3vKfpyDRmBmwNDJ4WeIYVGdyx0KRaebA2I",
    "NORMAL2-IM-1440-0001.jpeg": "kcPLfkxXm3-df0h4BXXKrPvFGJiEHNwNDRo4i7ukcgM",
    "NORMAL2-IM-1442-0001.jpeg": "0wuFyWt42r4d3wWGemh9_-epoGfNckhaus4vyVnCpQM",
    "person1946_bacteria_4874.jpeg": "i7-SrWHkO3_4wS7_OWWUz7xjHkodr_gN66PZKfYZnLA",
    "person1946_bacteria_4875.jpeg": "kFpwPaLKEjJvLYjOm5gjKQutl-mMgXnnc5PFb4aXjKo",
    "person1947_bacteria_4876.jpeg": "oQ3aFElZ93x1ibLIdNoA2WSeNO6WZguH741yAINSQVQ",
    "person1949_bacteria_4880.jpeg": "W96EbkoTezflaMZqYXUrTFz-IFew9K9r_Tz6s9sSArg",
    "person1950_bacteria_4881.jpeg": "4dUWG2ptgsy-5H_Y37Gm1E7e0dfk8WQSHdKiKb3EP10",
    "person1951_bacteria_4882.jpeg": "ETb6enRSjEtt1VtzGN7e_bx7Uj2wmSix698nb-8x8Is",
    "person1952_bacteria_4883.jpeg": "P-9Vsro8UcZq1BEi7U9kDBm7VJ2FDVP7vjpPGNnrToI",
    "person1954_bacteria_4886.jpeg": "mQTw_satw0nDVFL6mQlyG538sColTHa50ynzQyFR7Tk",
}


class SampleError(RuntimeError):
    """The sample could not be fetched or failed verification; the message says what to do."""


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def label_of(name: str) -> int:
    """Label from a Kaggle file name: 1 for ``person..._bacteria/virus_...``, else 0."""
    return 1 if name.lower().startswith("person") else 0


def fetch_wheel(cache_dir: str | os.PathLike | None = None, requirement: str = SAMPLE_REQUIREMENT) -> Path:
    """Download the wheel with ``pip download --no-deps`` (reused if already cached).

    Returns:
        The ``.whl`` file in ``cache_dir`` (default ``<home>/downloads``).

    Raises:
        SampleError: pip failed (no network, no such package); pip's last line is quoted.
    """
    cache = Path(cache_dir) if cache_dir else paths.pneumo_home() / "downloads"
    stem = requirement.replace("-", "_").replace("==", "-")
    cached = sorted(cache.glob(f"{stem}-*.whl"))
    if cached:
        return cached[0]
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--quiet", "--disable-pip-version-check", "-d", tmp, requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise SampleError(f"pip could not download {requirement} ({last}). Check that PyPI "
                              "is reachable (proxy, network) and try again.")
        return Path(shutil.move(str(wheels[0]), cache / wheels[0].name))


def install_sample(wheel: str | os.PathLike, out: str | os.PathLike | None = None, *,
                   force: bool = False, expected: dict[str, str] = SAMPLE_IMAGES) -> Path:
    """Verify the images inside ``wheel`` and lay them out as ``<out>/chest_xray/val/<CLASS>/``.

    Args:
        wheel: The package's ``.whl`` file.
        out: Folder to hold ``chest_xray/``; default ``paths.dataset_dir("sample").parent``.
        force: Replace an existing sample.
        expected: File name -> SHA-256 (URL-safe base64) of every image to install.

    Returns:
        The ``chest_xray`` folder.

    Raises:
        SampleError: The wheel is unreadable, an image is missing or its hash differs.
        FileExistsError: The sample exists and ``force`` is False.
    """
    root = Path(out).expanduser().absolute() if out else paths.dataset_dir("sample").parent
    target = root / "chest_xray"
    if target.exists() and not force:
        raise FileExistsError(f"{target} already exists; pass force=True (or --force) to replace it.")
    try:
        with zipfile.ZipFile(wheel) as z:
            blobs = {n[len(_IMAGE_DIR):]: z.read(n) for n in z.namelist()
                     if n.startswith(_IMAGE_DIR) and n[len(_IMAGE_DIR):] in expected}
    except (zipfile.BadZipFile, OSError) as err:
        raise SampleError(f"{wheel} is not a readable wheel ({err}); delete it and fetch again.") from None
    missing = sorted(set(expected) - set(blobs))
    if missing:
        raise SampleError(f"{wheel} lacks {len(missing)} sample image(s), e.g. {missing[0]}.")
    bad = sorted(n for n, data in blobs.items() if _digest(data) != expected[n])
    if bad:
        raise SampleError(f"SHA-256 mismatch for {', '.join(bad)} in {wheel}: the wheel is not "
                          "the published one. Delete it and fetch again.")
    with replace_atomically(target) as tmp:
        for name, data in blobs.items():
            file = tmp / "val" / CLASSES[label_of(name)] / name
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(data)
    return target


def download_sample(out: str | os.PathLike | None = None, *, force: bool = False) -> Path:
    """Fetch the wheel (:func:`fetch_wheel`) and install the 16 images (:func:`install_sample`)."""
    return install_sample(fetch_wheel(), out, force=force)
