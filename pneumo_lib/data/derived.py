"""Datasets derived from others, for the "Another hospital" mitigations (issue 16).

* :func:`equalized_copy`: a copy of a dataset whose every image was intensity-normalised
  by scikit-image (CLAHE, :func:`skimage.exposure.equalize_adapthist`, or global histogram
  equalisation, :func:`skimage.exposure.equalize_hist`): same layout, same file names,
  lesion masks (and ``markers.csv``) copied unchanged.
* :func:`pooled_copy`: one dataset holding every split of several hospitals (train of
  A + train of B, val of A + val of B, test of A + test of B), patients renumbered so that
  two hospitals never share a patient id; with ``same_patients`` (hospitals that filmed
  the same patients, as the phantom's do), each train/val patient from one hospital only.

On disk (``target`` is the folder the functions are given)::

    target/chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/<stem>.jpeg   images
    target/masks/<split>/PNEUMONIA/<stem>.png                         lesion masks (as the source's)
    target/markers.csv                                                if a source has one
    target/hospitals.csv                                              pooled only: where each image came from
    target/derived.json                                               what it was derived from

so :func:`pneumo_lib.data.mask_path` of a target image is its mask, as for a phantom.
``derived.json`` (:data:`PROVENANCE`) records the sources (paths, a fingerprint of their
file names and sizes, their ``phantom.json`` or ``derived.json``), the method and the
library and scikit-image versions; it marks the folder as written here. A target whose
record matches is reused as it is; one written here from something else is replaced
(written to a temporary sibling folder, then renamed into place); a folder holding
anything else is refused and left untouched. Sources are only read.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from pneumo_lib.data import phantom
from pneumo_lib.data.images import read_image
from pneumo_lib.data.layout import (
    CLASSES,
    MARKERS_FILE,
    SPLITS,
    list_images,
    marker_boxes,
    mask_path,
    patient_number,
    renumber_patient,
    resolve_data_dir,
    write_marker_boxes,
)
from pneumo_lib.data.staging import one_writer, replace_atomically

#: The record beside a derived dataset's ``chest_xray`` folder.
PROVENANCE = "derived.json"
#: Bump when what a derived dataset holds changes: existing ones are rewritten.
DERIVED_VERSION = 1
#: The intensity normalisations of :func:`equalized_copy` (scikit-image functions).
METHODS: tuple[str, ...] = ("clahe", "hist")
#: JPEG quality of the normalised images.
JPEG_QUALITY = 95
#: What a derived dataset folder may hold (anything else makes it foreign).
_OURS = ("chest_xray", "masks", MARKERS_FILE, "hospitals.csv", PROVENANCE)
_WRITTEN_BY = "pneumo_lib.data.derived"

_HOSPITAL_NAME = re.compile(r"^[A-Za-z0-9]+$")


# --------------------------------------------------------------------------- shared


def _source(data_dir: str | os.PathLike, what: str = "Source dataset") -> Path:
    """The checked ``chest_xray`` folder of a source (a ``chest_xray`` folder or its parent)."""
    try:
        return resolve_data_dir(data_dir)
    except (FileNotFoundError, ValueError) as err:
        raise type(err)(f"{what} {Path(data_dir)} is not a dataset in the Kaggle layout: {err}") from None


def _fingerprint(data_dir: Path) -> str:
    """SHA-256 (16 hex) of the names and sizes of a source's images and masks."""
    rows = []
    for record in list_images(data_dir, check=False):
        image = data_dir / record.path
        mask = mask_path(image)
        rows.append(f"{record.path},{image.stat().st_size},{mask.stat().st_size if mask.is_file() else -1}")
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def _describe(data_dir: Path) -> dict:
    """A source as the provenance records it: path, fingerprint, and what it says it is."""
    root = data_dir.parent
    out: dict = {"path": str(data_dir), "fingerprint": _fingerprint(data_dir)}
    spec = phantom.read_spec(root)
    if spec is not None:
        out["phantom"] = spec.to_json()
    record = read_provenance(data_dir)
    if record is not None:
        out["derived"] = record
    return out


def read_provenance(data_dir: str | os.PathLike) -> dict | None:
    """The ``derived.json`` record of a derived dataset, or None if it is not one.

    Args:
        data_dir: The dataset's ``chest_xray`` folder, or the folder holding it.
    """
    folder = Path(data_dir)
    for candidate in (folder / PROVENANCE, folder.parent / PROVENANCE):
        if candidate.is_file():
            return _read_record(candidate)
    return None


def _read_record(file: Path) -> dict | None:
    """The record in ``file`` if it is one this module wrote, else None."""
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("written_by") == _WRITTEN_BY else None


def _check_apart(target: Path, sources: list[Path]) -> None:
    """Refuse a target that is, holds, or sits inside a source dataset's folder."""
    t = target.resolve()
    for data_dir in sources:
        root = data_dir.parent.resolve()
        if t == root or root in t.parents or t in root.parents or t == data_dir.resolve():
            raise ValueError(f"Target {target} overlaps the source dataset {data_dir} (the source is never "
                             "modified); choose a target folder outside it.")


def _write(target: str | os.PathLike, record: dict, fill: Callable[[Path], None]) -> Path:
    """Reuse ``target`` if its record is ``record``, else write it with ``fill(tmp)``; returns chest_xray."""
    target = Path(target).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"Target {target} is a file, not a folder; choose another target folder. "
                              "Nothing was changed.")
    # One writer at a time: another process deriving the same folder waits here, then reuses it.
    with one_writer(target):
        if target.is_dir() and any(target.iterdir()):
            existing = _read_record(target / PROVENANCE) if (target / PROVENANCE).is_file() else None
            if existing is None:
                raise FileExistsError(
                    f"Target {target} already holds files that are not a dataset derived by pneumo_lib "
                    f"(no {PROVENANCE}); choose an empty or new folder, or move those files away. Nothing was changed.")
            foreign = sorted(p.name for p in target.iterdir() if p.name not in _OURS)
            if foreign:
                raise FileExistsError(
                    f"Target {target} is a derived dataset but also holds other files ({', '.join(foreign[:5])}); "
                    "move them away or choose another folder. Nothing was changed.")
            if existing == record and (target / "chest_xray").is_dir():
                return target / "chest_xray"
        with replace_atomically(target) as tmp:
            fill(tmp)
            (tmp / PROVENANCE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return target / "chest_xray"


def _base_record(kind: str) -> dict:
    import skimage

    import pneumo_lib

    return {"written_by": _WRITTEN_BY, "kind": kind, "version": DERIVED_VERSION,
            "library_version": pneumo_lib.__version__, "skimage_version": skimage.__version__}


def _make_split_folders(chest: Path) -> None:
    for split in SPLITS:
        for cls in CLASSES:
            (chest / split / cls).mkdir(parents=True, exist_ok=True)


def _copy_mask(source_image: Path, target_image: Path) -> None:
    src = mask_path(source_image)
    if src.is_file():
        dst = mask_path(target_image)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


# --------------------------------------------------------------------------- equalized


def equalize(pixels: np.ndarray, method: str = "clahe", clip_limit: float = 0.01) -> np.ndarray:
    """Intensity-normalise one grayscale image with scikit-image.

    Args:
        pixels: ``(H, W)`` array, float in ``[0, 1]`` or uint8 in ``[0, 255]``.
        method: ``"clahe"`` (:func:`skimage.exposure.equalize_adapthist` with ``clip_limit``)
            or ``"hist"`` (:func:`skimage.exposure.equalize_hist`, 256 bins).
        clip_limit: CLAHE's clip limit, in ``(0, 1]`` (higher: more contrast).

    Returns:
        uint8 array ``(H, W)`` in ``[0, 255]`` (scikit-image's float output through
        :func:`skimage.util.img_as_ubyte`).

    Raises:
        ValueError: Unknown method (the message lists :data:`METHODS`), or a clip limit outside ``(0, 1]``.
    """
    from skimage import exposure, util

    method = _check_method(method, clip_limit)
    if method == "clahe":
        out = exposure.equalize_adapthist(pixels, clip_limit=clip_limit)
    else:
        out = exposure.equalize_hist(pixels, nbins=256)
    return util.img_as_ubyte(np.clip(out, 0.0, 1.0))


def _check_method(method: str, clip_limit: float) -> str:
    if method not in METHODS:
        raise ValueError(f"Unknown equalisation method {method!r}. Valid methods: {', '.join(METHODS)}.")
    if isinstance(clip_limit, bool) or not 0.0 < float(clip_limit) <= 1.0:
        raise ValueError(f"clip_limit must be in (0, 1], got {clip_limit!r}.")
    return method


def equalized_copy(source: str | os.PathLike, target: str | os.PathLike, *, method: str = "clahe",
                   clip_limit: float = 0.01) -> Path:
    """A copy of a dataset with every image intensity-normalised by scikit-image (see :func:`equalize`).

    Same layout and file names as ``source``; images are 8-bit grayscale (mode ``L``), of
    the source's size, JPEG at quality :data:`JPEG_QUALITY` (PNG sources stay PNG); lesion
    masks, ``markers.csv`` and (of a pooled source) ``hospitals.csv`` are copied byte for
    byte. Written to a temporary sibling folder and renamed into place when complete;
    reused when ``target`` already holds this copy (same source files, method, clip limit,
    library and scikit-image versions).

    Args:
        source: A dataset in the Kaggle layout: its ``chest_xray`` folder or the folder
            holding it (e.g. :func:`pneumo_lib.data.ensure_phantom`'s result). Only read.
        target: Folder to create; it will hold ``chest_xray/``, ``masks/`` and :data:`PROVENANCE`.
        method: ``"clahe"`` or ``"hist"`` (:data:`METHODS`).
        clip_limit: CLAHE's clip limit in ``(0, 1]`` (recorded, and only used, for ``"clahe"``).

    Returns:
        The target's ``chest_xray`` folder (``target / "chest_xray"``).

    Raises:
        ValueError: Unknown method (the message lists the valid ones), bad clip limit, a
            target overlapping the source, or a DICOM source image (not rewritten).
        FileNotFoundError: ``source`` is not in the Kaggle layout (the message names it).
        FileExistsError: ``target`` holds files not written here (nothing is changed).
    """
    method = _check_method(method, clip_limit)
    data_dir = _source(source)
    _check_apart(Path(target), [data_dir])
    records = list_images(data_dir)
    dicoms = [r.path for r in records if Path(r.path).suffix.lower() not in (".jpeg", ".jpg", ".png")]
    if dicoms:
        raise ValueError(f"Source dataset {data_dir} holds DICOM images ({dicoms[0]}, ...); equalized_copy "
                         "writes JPEG/PNG only. Convert them first.")
    record = {**_base_record("equalized"), "method": method,
              "clip_limit": float(clip_limit) if method == "clahe" else None,
              "jpeg_quality": JPEG_QUALITY, "sources": {"source": _describe(data_dir)}}

    def fill(tmp: Path) -> None:
        chest = tmp / "chest_xray"
        _make_split_folders(chest)
        for r in records:
            src, dst = data_dir / r.path, chest / r.path
            pixels = equalize(read_image(src), method, clip_limit)
            image = Image.fromarray(pixels, mode="L")
            if dst.suffix.lower() == ".png":
                image.save(dst, format="PNG")
            else:
                image.save(dst, format="JPEG", quality=JPEG_QUALITY)
            _copy_mask(src, dst)
        for extra in (MARKERS_FILE, "hospitals.csv"):  # same names: still right for the copy
            if (data_dir.parent / extra).is_file():
                shutil.copyfile(data_dir.parent / extra, tmp / extra)

    return _write(target, record, fill)


# --------------------------------------------------------------------------- pooled


def _patient_key(record) -> tuple[int, str]:
    return record.label, record.patient


def patients_by_hospital(records: dict[str, list], seed: int = 42) -> dict[tuple[int, str], str]:
    """Which hospital each train/val patient is taken from, when every hospital filmed the same patients.

    Args:
        records: ``{hospital: [ImageRecord, ...]}`` (:func:`pneumo_lib.data.list_images` of
            each source), two or more hospitals whose train and val images have the same
            relative paths.
        seed: Seed of the shuffle.

    Returns:
        ``{(label, patient id): hospital}`` for every train/val patient: per class, the
        patients (sorted, then shuffled with ``seed``) are dealt to the hospitals in turn, in
        the dict's order, so each hospital gets every ``k``-th patient of each class.

    Raises:
        ValueError: The hospitals' train/val images differ (the message names one that is
            in one source and not in another).
    """
    hospitals = list(records)
    names = {h: {r.path for r in rs if r.split != "test"} for h, rs in records.items()}
    first = hospitals[0]
    for h in hospitals[1:]:
        extra = sorted(names[first] ^ names[h])
        if extra:
            has, lacks = (first, h) if extra[0] in names[first] else (h, first)
            raise ValueError(
                f"same_patients needs the same train and val images at every hospital, but {extra[0]} is in "
                f"{has} and not in {lacks}; pool these datasets without same_patients.")
    rng = np.random.default_rng(seed)
    keys = sorted({_patient_key(r) for r in records[first] if r.split != "test"})
    out: dict[tuple[int, str], str] = {}
    for label in sorted({k[0] for k in keys}):
        group = [k for k in keys if k[0] == label]
        for i, j in enumerate(rng.permutation(len(group))):
            out[group[int(j)]] = hospitals[i % len(hospitals)]
    return out


def renumbered_name(file_name: str, offset: int, hospital: str) -> str:
    """A file name with its patient number moved by ``offset`` (what :func:`pooled_copy` writes).

    ``person12_bacteria_40.jpeg``, offset 1000 -> ``person1012_bacteria_40.jpeg``;
    ``NORMAL2-IM-0115-0001.jpeg`` -> ``NORMAL2-IM-1115-0001.jpeg`` (zero padding kept).
    A name without a Kaggle patient number is its own patient
    (:func:`pneumo_lib.data.patient_id`) and gets the hospital as a prefix
    (``B-scan7.jpeg``), which no renumbered name has.
    """
    return renumber_patient(file_name, offset) or f"{hospital}-{Path(file_name).name}"


def pooled_copy(sources: dict[str, str | os.PathLike], target: str | os.PathLike, *,
                same_patients: bool = False, seed: int = 42) -> Path:
    """One dataset holding every split of several hospitals' datasets, patients kept apart.

    Split ``s`` and class ``c`` of the result hold split ``s`` and class ``c`` of every
    source (train of A + train of B, ..., test of A + test of B); the images are copied
    byte for byte, masks follow their images. Patient numbers are moved by a per-hospital
    offset (:func:`renumbered_name`): hospital ``k`` (in the dict's order, from 0) adds
    ``k * step``, ``step`` the smallest power of ten above every patient number of every
    source, so the first hospital keeps its names, a patient's images keep one id, no id is
    shared by two hospitals, and ``personN_bacteria_M`` / ``personN_virus_M`` still say
    the subtype. ``hospitals.csv`` lists, for each image, ``path`` (relative to the result's
    ``chest_xray``), ``hospital`` and ``source_path`` (relative to that source's
    ``chest_xray``); :data:`PROVENANCE` records the sources and offsets.

    Args:
        sources: ``{hospital name: dataset}``, names of letters and digits (e.g.
            ``{"A": ensure_phantom(..., hospital="A"), "B": ...}``); each dataset a
            ``chest_xray`` folder (or the folder holding it) in the Kaggle layout. Only read.
        target: Folder to create; it will hold ``chest_xray/``, ``masks/``, ``hospitals.csv``
            and :data:`PROVENANCE`.
        same_patients: The sources are the same patients filmed at each hospital (as the
            phantom's hospitals are: same file names in every source). Then each train/val
            patient is taken from one hospital only (:func:`patients_by_hospital`), so the
            pool holds as many train and val films as one source, about ``1/k`` of them from
            each of ``k`` hospitals, and no patient is in it twice under two ids (which
            would let one patient's films fall on both sides of the train/val re-split).
            Test splits are pooled whole, as without it.
        seed: Seed of that assignment of patients to hospitals (only used with ``same_patients``).

    Returns:
        The target's ``chest_xray`` folder (``target / "chest_xray"``).

    Raises:
        ValueError: No source, a bad hospital name, one dataset given twice, a target
            overlapping a source, or (``same_patients``) sources whose train and val
            images do not have the same names.
        FileNotFoundError: A source is not in the Kaggle layout (the message names it).
        FileExistsError: ``target`` holds files not written here (nothing is changed).
    """
    if not isinstance(sources, dict) or not sources:
        raise ValueError("pooled_copy needs {hospital name: dataset folder}, at least one.")
    bad = [h for h in sources if not isinstance(h, str) or not _HOSPITAL_NAME.match(h)]
    if bad:
        raise ValueError(f"Hospital names must be letters and digits, got {bad[0]!r}.")
    dirs = {h: _source(p, f"Source dataset of hospital {h}") for h, p in sources.items()}
    seen: dict[Path, str] = {}
    for h, d in dirs.items():
        if d.resolve() in seen:
            raise ValueError(f"Hospitals {seen[d.resolve()]} and {h} are the same dataset ({d}); pool different ones.")
        seen[d.resolve()] = h
    _check_apart(Path(target), list(dirs.values()))
    records = {h: list_images(d) for h, d in dirs.items()}
    if same_patients:
        keep = patients_by_hospital(records, seed)
        records = {h: [r for r in rs if r.split == "test" or keep[_patient_key(r)] == h]
                   for h, rs in records.items()}
    numbers = [n for rs in records.values() for r in rs if (n := patient_number(r.path.rsplit("/", 1)[1])) is not None]
    step = 10 ** len(str(max(numbers, default=0)))
    offsets = {h: k * step for k, h in enumerate(dirs)}
    plan: list[tuple[str, Path, str, str]] = []  # (hospital, source image, source rel, target rel)
    names: dict[str, str] = {}
    for h, rs in records.items():
        for r in rs:
            folder, name = r.path.rsplit("/", 1)
            rel = f"{folder}/{renumbered_name(name, offsets[h], h)}"
            if rel in names:  # cannot happen with the offsets above; checked all the same
                raise ValueError(f"Pooling would write {rel} twice (from hospitals {names[rel]} and {h}).")
            names[rel] = h
            plan.append((h, dirs[h] / r.path, r.path, rel))
    record = {**_base_record("pooled"), "step": step, "offsets": offsets,
              "same_patients": {"seed": int(seed)} if same_patients else None,
              "sources": {h: _describe(d) for h, d in dirs.items()}}

    def fill(tmp: Path) -> None:
        chest = tmp / "chest_xray"
        _make_split_folders(chest)
        for _, src, _, rel in plan:
            shutil.copyfile(src, chest / rel)
            _copy_mask(src, chest / rel)
        with open(tmp / "hospitals.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "hospital", "source_path"])
            writer.writerows((rel, h, src_rel) for h, _, src_rel, rel in plan)
        renamed = {(h, src_rel): rel for h, _, src_rel, rel in plan}
        markers = [(renamed[(h, src_rel)], *box) for h, d in dirs.items()
                   for src_rel, box in marker_boxes(d).items() if (h, src_rel) in renamed]
        if markers:
            write_marker_boxes(tmp / MARKERS_FILE, markers)

    return _write(target, record, fill)


def pooled_hospitals(data_dir: str | os.PathLike) -> dict[str, str]:
    """``{image path relative to chest_xray: hospital}`` of a :func:`pooled_copy` result.

    Raises:
        FileNotFoundError: ``data_dir`` (a ``chest_xray`` folder or its parent) has no ``hospitals.csv``.
    """
    folder = Path(data_dir)
    for file in (folder / "hospitals.csv", folder.parent / "hospitals.csv"):
        if file.is_file():
            with open(file, newline="") as fh:
                return {row["path"]: row["hospital"] for row in csv.DictReader(fh)}
    raise FileNotFoundError(f"{folder} is not a pooled dataset (no hospitals.csv beside its chest_xray folder).")
