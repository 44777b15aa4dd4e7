"""A Kaggle-shaped stand-in dataset, and seeded subsets of a dataset, for the rehearsal.

``pneumo book run --profile full --rehearse`` runs every chapter on the ``kaggle`` source.
When no real download exists, :func:`write_kaggle_standin` writes a small folder that looks
like one: Kaggle's layout and file names (``train/val/test`` x ``NORMAL/PNEUMONIA``,
``personN_bacteria_M.jpeg``, ``personN_virus_M.jpeg``, ``IM-NNNN-NNNN.jpeg``,
``NORMAL2-IM-NNNN-NNNN.jpeg``), JPEGs from 400 to 2,900 px wide, a few stored as RGB,
``.DS_Store`` files, and the 8 + 8 image ``val`` split. The images are phantom radiographs
(:mod:`pneumo_lib.data.phantom`), without the phantom's lesion masks, as on Kaggle.

:func:`subset_dataset` copies at most ``n`` images of each class in each split of a
dataset into a folder of its own (what ``ensure_dataset`` returns for a profile with
``images_per_class``); the source is only read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from pneumo_lib import paths
from pneumo_lib.data import phantom
from pneumo_lib.data.layout import CLASSES, SPLITS, list_images
from pneumo_lib.data.staging import replace_atomically

#: Images per split and class ``{split: (NORMAL, PNEUMONIA)}`` of the stand-in: small, with
#: Kaggle's 8 + 8 validation split.
STANDIN_COUNTS: dict[str, tuple[int, int]] = {"train": (24, 30), "val": (8, 8), "test": (16, 24)}
#: Width range of the stand-in's JPEGs in pixels (the real images are 384 to 2,916 px wide).
STANDIN_WIDTHS: tuple[int, int] = (400, 2900)
#: Every ``RGB_EVERY``-th stand-in image is stored as a 3-channel JPEG (Kaggle has a few hundred).
RGB_EVERY = 9
#: The file that says a folder is a stand-in (beside its ``chest_xray``), never in a real download.
STANDIN_MARK = "standin.json"
#: The file that records what a subset was copied from (beside its ``chest_xray``).
SUBSET_MARK = "subset.json"

# The first bytes of a Finder .DS_Store file ("\0\0\0\1Bud1"), as real downloads carry.
_DS_STORE = b"\x00\x00\x00\x01Bud1" + bytes(2040)


def standin_root() -> Path:
    """Folder the rehearsal's stand-in lives in: ``<home>/rehearsal/kaggle-standin`` (holds ``chest_xray``)."""
    return paths.pneumo_home() / "rehearsal" / "kaggle-standin"


def _spec_of(counts: dict[str, tuple[int, int]], seed: int) -> dict:
    return {"counts": {k: list(v) for k, v in counts.items()}, "seed": int(seed),
            "widths": list(STANDIN_WIDTHS), "rgb_every": RGB_EVERY, "version": 1}


def write_kaggle_standin(root: str | os.PathLike[str] | None = None, *, seed: int = 42,
                         counts: dict[str, tuple[int, int]] | None = None) -> Path:
    """Write (or reuse) a Kaggle-shaped stand-in dataset.

    Args:
        root: Folder to hold ``chest_xray/`` and :data:`STANDIN_MARK` (default:
            :func:`standin_root`). An existing stand-in written with the same settings is
            reused; a folder holding anything else is refused.
        seed: Seed of the images, names, widths and which images are RGB.
        counts: Images per split and class (default :data:`STANDIN_COUNTS`); each at least 1.

    Returns:
        The ``chest_xray`` folder. Widths span :data:`STANDIN_WIDTHS` (the narrowest image
        is 400 px, the widest 2,900 px), every :data:`RGB_EVERY`-th image is RGB, and
        ``.DS_Store`` files sit in ``chest_xray`` and in every split and class folder.

    Raises:
        FileExistsError: ``root`` holds files that are not a stand-in written here.
        ValueError: A count below 1 or an unknown split.
    """
    counts = dict(STANDIN_COUNTS if counts is None else counts)
    unknown = sorted(set(counts) - set(SPLITS))
    if unknown or any(int(n) < 1 for pair in counts.values() for n in pair):
        raise ValueError(f"Stand-in counts take splits {', '.join(SPLITS)} with at least 1 image per "
                         f"class; got {counts!r}.")
    root = Path(root) if root is not None else standin_root()
    spec = _spec_of(counts, seed)
    mark = root / STANDIN_MARK
    if (root / "chest_xray").is_dir() and mark.is_file():
        if json.loads(mark.read_text(encoding="utf-8")) == spec:
            return root / "chest_xray"
    elif root.is_dir() and any(root.iterdir()):
        raise FileExistsError(f"{root} holds files that are not a Kaggle stand-in written by pneumo_lib "
                              f"(no {STANDIN_MARK}); choose an empty or new folder. Nothing was changed.")
    base = phantom.phantom_spec("quick", seed)
    pspec = dataclasses.replace(base, counts={s: tuple(counts.get(s, (0, 0))) for s in SPLITS})
    with tempfile.TemporaryDirectory(prefix=".standin-phantom-", dir=root.parent if root.parent.is_dir()
                                     else None) as scratch:
        source = phantom.generate_phantom(Path(scratch) / "phantom", pspec, workers=1)
        with replace_atomically(root) as tmp:
            _reshape(source, tmp / "chest_xray", seed)
            (tmp / STANDIN_MARK).write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    return root / "chest_xray"


def _reshape(source: Path, target: Path, seed: int) -> None:
    """Copy the phantom's images to ``target`` at Kaggle's widths, some RGB, with .DS_Store files."""
    records = list_images(source)
    rng = np.random.default_rng([seed, 400, 2900])
    low, high = STANDIN_WIDTHS
    widths = rng.integers(low, high + 1, size=len(records))
    widths[0], widths[-1] = low, high  # the range's ends are always there
    for i, (record, width) in enumerate(zip(records, widths)):
        out = target / record.path
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(source / record.path) as im:
            gray = im.convert("L")
            height = max(1, round(gray.height * int(width) / gray.width))
            big = gray.resize((int(width), height), Image.BICUBIC)
        if i % RGB_EVERY == RGB_EVERY - 1:
            big = big.convert("RGB")
        big.save(out, format="JPEG", quality=90)
    (target / ".DS_Store").write_bytes(_DS_STORE)
    for split in SPLITS:
        (target / split / ".DS_Store").write_bytes(_DS_STORE)
        for name in CLASSES:
            (target / split / name / ".DS_Store").write_bytes(_DS_STORE)


def is_standin(data_dir: str | os.PathLike[str]) -> bool:
    """True when ``data_dir`` (a ``chest_xray`` folder) was written by :func:`write_kaggle_standin`.

    A subset (:func:`subset_dataset`) of a stand-in counts as one too.
    """
    root = Path(data_dir).expanduser().absolute().parent
    if (root / STANDIN_MARK).is_file():
        return True
    mark = root / SUBSET_MARK
    if mark.is_file():
        return bool(json.loads(mark.read_text(encoding="utf-8")).get("standin"))
    return False


def subset_dataset(data_dir: str | os.PathLike[str], images_per_class: int, *, seed: int = 42,
                   name: str = "kaggle") -> Path:
    """A seeded subset of a Kaggle-layout folder: at most ``images_per_class`` per split and class.

    The subset is copied (same file names and layout) to
    ``<home>/rehearsal/<name>-<n>-seed<seed>-<8 hex digits of the source path>/chest_xray``
    and reused while the source's chosen files are unchanged (names and sizes); the source
    folder is only read. Images are picked uniformly at random (``seed``) within each split
    and class; a class with fewer images keeps all of them (Kaggle's 8 + 8 ``val`` split
    stays whole for ``n >= 8``).

    Args:
        data_dir: A ``chest_xray`` folder in the Kaggle layout.
        images_per_class: At most this many images per split and class (at least 1).
        seed: Seed of the choice.
        name: Source name for the folder (e.g. ``"kaggle"``).

    Returns:
        The subset's ``chest_xray`` folder.

    Raises:
        ValueError: ``images_per_class`` below 1.
        FileNotFoundError: ``data_dir`` is not in the Kaggle layout (the message says why).
    """
    if isinstance(images_per_class, bool) or int(images_per_class) < 1:
        raise ValueError(f"images_per_class must be at least 1, got {images_per_class!r}.")
    n = int(images_per_class)
    source = Path(data_dir).expanduser().absolute()
    records = list_images(source)
    chosen = []
    for split in SPLITS:
        for label in range(len(CLASSES)):
            group = sorted(r.path for r in records if r.split == split and r.label == label)
            if len(group) > n:
                rng = np.random.default_rng([seed, SPLITS.index(split), label, n])
                group = sorted(group[i] for i in rng.choice(len(group), size=n, replace=False))
            chosen.extend(group)
    files = {rel: (source / rel).stat().st_size for rel in chosen}
    digest = hashlib.sha1(str(source).encode()).hexdigest()[:8]
    root = paths.pneumo_home() / "rehearsal" / f"{name}-{n}-seed{seed}-{digest}"
    record = {"source": str(source), "images_per_class": n, "seed": int(seed), "files": files,
              "standin": is_standin(source)}
    mark = root / SUBSET_MARK
    if (root / "chest_xray").is_dir() and mark.is_file():
        if json.loads(mark.read_text(encoding="utf-8")) == record:
            return root / "chest_xray"
    with replace_atomically(root) as tmp:
        for rel in chosen:
            out = tmp / "chest_xray" / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, out)
        (tmp / SUBSET_MARK).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return root / "chest_xray"
