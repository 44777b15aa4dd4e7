"""The Kaggle folder layout every data source lands in, and what file names mean.

``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/<name>.<ext>``; labels are
``0 = NORMAL``, ``1 = PNEUMONIA``. Non-image files (``.DS_Store``, ``Thumbs.db``,
hidden files) are ignored everywhere.
"""

from __future__ import annotations

import csv
import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

#: Class names in label order: ``CLASSES[0] == "NORMAL"``, ``CLASSES[1] == "PNEUMONIA"``.
CLASSES: tuple[str, str] = ("NORMAL", "PNEUMONIA")
#: The official splits of the Kaggle dataset.
SPLITS: tuple[str, str, str] = ("train", "val", "test")
#: File suffixes read as images (lower case).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpeg", ".jpg", ".png", ".dcm", ".dicom")

# Kaggle's file stems as (prefix, patient number, rest); the patient id is prefix + number.
_PATIENT_STEMS = (
    re.compile(r"^(person)(\d+)(_.*)$", re.IGNORECASE),
    re.compile(r"^((?:NORMAL2-)?IM-)(\d+)(-\d+.*)$", re.IGNORECASE),
)


def _patient_parts(file_name: str) -> re.Match | None:
    stem = Path(file_name).stem
    return next((m for m in (p.match(stem) for p in _PATIENT_STEMS) if m), None)


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset in the Kaggle layout.

    Attributes:
        path: Path relative to the ``chest_xray`` folder, with ``/`` separators.
        split: The folder split: ``"train"``, ``"val"`` or ``"test"``.
        label: 0 (NORMAL) or 1 (PNEUMONIA).
        patient: Patient id parsed from the file name (see :func:`patient_id`).
    """

    path: str
    split: str
    label: int
    patient: str


def is_image_name(name: str) -> bool:
    """True for file names the library reads as images (not hidden, known suffix)."""
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES


def patient_id(file_name: str, label: int | None = None) -> str:
    """The patient a Kaggle-style file name belongs to.

    ``person1946_bacteria_4874.jpeg`` -> ``"person1946"``; ``IM-0115-0001.jpeg`` ->
    ``"IM-0115"``; ``NORMAL2-IM-0372-0001.jpeg`` -> ``"NORMAL2-IM-0372"``. A name
    that follows neither convention is its own patient (its stem), prefixed with the
    class so that ids never collide across classes.
    """
    m = _patient_parts(file_name)
    if m:
        return m.group(1) + m.group(2)
    prefix = f"{CLASSES[label]}/" if label is not None else ""
    return prefix + Path(file_name).stem


def patient_number(file_name: str) -> int | None:
    """The patient number in a Kaggle-style file name (``person12_virus_3.jpeg`` -> 12,
    ``IM-0115-0001.jpeg`` -> 115), or None for a name that follows neither convention."""
    m = _patient_parts(file_name)
    return int(m.group(2)) if m else None


def renumber_patient(file_name: str, offset: int) -> str | None:
    """The file name with its patient number moved by ``offset`` (zero padding kept), or None
    for a name that follows neither convention.

    ``person12_bacteria_40.jpeg``, 1000 -> ``person1012_bacteria_40.jpeg``;
    ``NORMAL2-IM-0115-0001.jpeg``, 1000 -> ``NORMAL2-IM-1115-0001.jpeg``; offset 0 keeps the name.
    """
    m = _patient_parts(file_name)
    if not m:
        return None
    number = f"{int(m.group(2)) + offset:0{len(m.group(2))}d}"
    return f"{m.group(1)}{number}{m.group(3)}{Path(file_name).suffix}"


def link_problem(path: str | os.PathLike) -> str | None:
    """Why the symbolic link ``path`` cannot be followed (a loop, or broken), else None.

    None too when ``path`` is not a symbolic link or leads to something that exists.
    """
    path = Path(path)
    if not path.is_symlink():
        return None
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic-link loop (the link leads back to itself); remove or fix the link"
        return f"broken symbolic link to {os.readlink(path)}; remove or fix the link"
    return None


def _missing(folder: Path, what: str) -> str:
    """``folder`` is absent: say so, or that it is a link that cannot be followed."""
    why = link_problem(folder)
    return f"{what} {folder} is a {why}" if why else f"Missing {what.lower()} {folder}."


def check_layout(data_dir: str | os.PathLike, splits: tuple[str, ...] = SPLITS) -> Path:
    """Check that ``data_dir`` is a ``chest_xray`` folder in the Kaggle layout.

    Args:
        data_dir: The folder holding ``train/``, ``val/``, ``test/``.
        splits: The splits that must be present.

    Returns:
        ``data_dir`` as an absolute :class:`Path`.

    Raises:
        FileNotFoundError: The folder or a split/class folder is missing; when the
            layout sits one level deeper (``chest_xray/chest_xray/...``, as some
            unzips produce) the message names the folder to use instead.
        ValueError: A class folder holds no images.
    """
    root = Path(data_dir).expanduser().absolute()
    if not root.is_dir():
        why = link_problem(root)
        if why:
            raise FileNotFoundError(f"Dataset folder {root} is a {why}.")
        if root.exists():
            raise FileNotFoundError(f"{root} is a file, not a dataset folder: expected a chest_xray folder "
                                    "(or the folder holding it) in the Kaggle layout.")
        raise FileNotFoundError(f"Dataset folder {root} does not exist.")
    for split in splits:
        if link_problem(root / split):
            raise FileNotFoundError(_missing(root / split, "Split folder") + ".")
    missing = [s for s in splits if not (root / s).is_dir()]
    if missing:
        nested = [p.parent for p in root.glob("*/train") if p.is_dir()]
        nested += [p.parent for p in root.glob("*/*/train") if p.is_dir()]
        hint = f" The layout is one level deeper: use {nested[0]} instead." if nested else (
            " Expected chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/ (the Kaggle layout).")
        raise FileNotFoundError(f"{root} has no split folder(s) {', '.join(missing)}.{hint}")
    for split in splits:
        for cls in CLASSES:
            folder = root / split / cls
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"{_missing(folder, 'Class folder').rstrip('.')}. Each split needs NORMAL/ and PNEUMONIA/.")
            if not any(is_image_name(f.name) for f in folder.iterdir() if f.is_file()):
                raise ValueError(f"Class folder {folder} holds no images (.jpeg/.png/.dcm).")
    return root


def resolve_data_dir(data_dir: str | os.PathLike, splits: tuple[str, ...] = SPLITS,
                     check: bool = True) -> Path:
    """The ``chest_xray`` folder a user meant: the one rule every command and function follows.

    Accepted, in this order: ``data_dir`` itself when it holds split folders
    (``chest_xray/``); its child ``chest_xray/`` (the folder ``pneumo data ... --out DIR``
    wrote); the Kaggle archive's nested ``chest_xray/chest_xray/`` (beside ``__MACOSX/``).

    Args:
        data_dir: Any of those folders.
        splits: The splits to look for (and to require when ``check``).
        check: Also run :func:`check_layout` on the folder found (raises on a wrong layout).

    Returns:
        The absolute ``chest_xray`` folder (``data_dir`` itself when nothing matched and
        ``check`` is False).

    Raises:
        FileNotFoundError, ValueError: With ``check``, as :func:`check_layout`
            (the folder does not exist, or no candidate has the splits).
    """
    root = Path(data_dir).expanduser().absolute()
    for candidate in (root, root / "chest_xray", root / "chest_xray" / "chest_xray"):
        if any((candidate / s).is_dir() for s in splits):
            root = candidate
            break
    return check_layout(root, splits) if check else root


def list_images(data_dir: str | os.PathLike, splits: tuple[str, ...] = SPLITS,
                check: bool = True) -> list[ImageRecord]:
    """Every image of a Kaggle-layout folder, sorted by path.

    Args:
        data_dir: The ``chest_xray`` folder.
        splits: Which split folders to list.
        check: Run :func:`check_layout` first (raises on a wrong layout).

    Returns:
        One :class:`ImageRecord` per image file (non-image files are skipped).
    """
    root = check_layout(data_dir, splits) if check else Path(data_dir)
    records = []
    for split in splits:
        for label, cls in enumerate(CLASSES):
            folder = root / split / cls
            if not folder.is_dir():
                continue
            for f in sorted(folder.iterdir()):
                if f.is_file() and is_image_name(f.name):
                    records.append(ImageRecord(f"{split}/{cls}/{f.name}", split, label,
                                               patient_id(f.name, label)))
    return records


def mask_path(image_path: str | os.PathLike) -> Path:
    """Where the lesion mask of a phantom image lives.

    ``<root>/chest_xray/<split>/<CLASS>/<stem>.jpeg`` ->
    ``<root>/masks/<split>/<CLASS>/<stem>.png`` (the file exists only for phantom
    PNEUMONIA images).
    """
    p = Path(image_path)
    split_dir = p.parent.parent
    return split_dir.parent.parent / "masks" / split_dir.name / p.parent.name / f"{p.stem}.png"


#: The file beside a dataset's ``chest_xray`` folder listing its shortcut marker boxes.
MARKERS_FILE = "markers.csv"
_MARKER_FIELDS = ("path", "x0", "y0", "x1", "y1")


def marker_boxes(data_dir: str | os.PathLike) -> dict[str, tuple[int, int, int, int]]:
    """Shortcut marker boxes of a phantom dataset: ``{relative path: (x0, y0, x1, y1)}`` in image pixels."""
    file = Path(data_dir).parent / MARKERS_FILE
    if not file.is_file():
        return {}
    with open(file, newline="") as fh:
        return {r["path"]: tuple(int(r[k]) for k in _MARKER_FIELDS[1:]) for r in csv.DictReader(fh)}


def write_marker_boxes(file: str | os.PathLike, boxes) -> Path:
    """Write ``markers.csv`` (read back by :func:`marker_boxes`).

    Args:
        file: The file to write (``<dataset root>/markers.csv``).
        boxes: ``(path, x0, y0, x1, y1)`` rows, ``path`` relative to ``chest_xray``.
    """
    file = Path(file)
    with open(file, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(_MARKER_FIELDS)
        writer.writerows(boxes)
    return file
