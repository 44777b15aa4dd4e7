"""Leak-free splits: merge Kaggle's train and val, re-split by patient, keep test.

Kaggle's official ``val`` split holds 16 images, too few to select a model on, so
(as prior project A and its paper did) train and val are merged and re-split into
``train``/``val``: stratified by class and grouped by patient, so no patient's
images land on both sides. Kaggle's ``test`` split stays the test split. The
result is a manifest (a CSV of paths, labels and patients), never copied images.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pneumo_lib import paths
from pneumo_lib.data.layout import CLASSES, SPLITS, ImageRecord, list_images

MANIFEST_FIELDS = ("path", "split", "label", "patient", "source_split")


@dataclass(frozen=True)
class SplitManifest:
    """Which image belongs to which split.

    Attributes:
        data_dir: The ``chest_xray`` folder the paths are relative to.
        records: One :class:`ImageRecord` per image, ``split`` being the *new* split.
        source_splits: The folder split each image came from, parallel to ``records``.
    """

    data_dir: Path
    records: tuple[ImageRecord, ...]
    source_splits: tuple[str, ...] = field(default=())

    def select(self, split: str) -> list[ImageRecord]:
        """Records of one split (``"train"``, ``"val"`` or ``"test"``)."""
        chosen = [r for r in self.records if r.split == split]
        if not chosen:
            raise ValueError(f"Split {split!r} is empty or unknown; splits here: "
                             f"{', '.join(sorted({r.split for r in self.records}))}.")
        return chosen

    def paths(self, split: str) -> list[Path]:
        """Absolute image paths of one split, in manifest order."""
        return [self.data_dir / r.path for r in self.select(split)]

    def labels(self, split: str) -> np.ndarray:
        """Labels of one split: int64 array ``(N,)`` of 0 (NORMAL) / 1 (PNEUMONIA)."""
        return np.array([r.label for r in self.select(split)], dtype=np.int64)

    def patients(self, split: str) -> list[str]:
        """Patient id of every image of one split, in manifest order (for patient-level bootstrap)."""
        return [r.patient for r in self.select(split)]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {"NORMAL": n, "PNEUMONIA": n}}`` for every split present."""
        present = {r.split for r in self.records}
        out = {s: {c: 0 for c in CLASSES} for s in (*SPLITS, *sorted(present - set(SPLITS))) if s in present}
        for r in self.records:
            out[r.split][CLASSES[r.label]] += 1
        return out

    def save(self, file: str | os.PathLike) -> Path:
        """Write the manifest as CSV (paths relative to ``data_dir``); returns the file."""
        file = Path(file)
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = paths.partial_path(file)
        try:
            with open(tmp, "w", newline="") as fh:
                fh.write(f"# data_dir={self.data_dir}\n")
                writer = csv.writer(fh)
                writer.writerow(MANIFEST_FIELDS)
                sources = self.source_splits or tuple(r.split for r in self.records)
                for r, s in zip(self.records, sources):
                    writer.writerow([r.path, r.split, r.label, r.patient, s])
            tmp.replace(file)
        finally:
            tmp.unlink(missing_ok=True)
        return file

    @classmethod
    def load(cls, file: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> "SplitManifest":
        """Read a manifest written by :meth:`save` (``data_dir`` overrides the stored one)."""
        with open(file, newline="") as fh:
            first = fh.readline().strip()
            stored = first.split("=", 1)[1] if first.startswith("# data_dir=") else None
            rows = list(csv.DictReader(fh))
        base = Path(data_dir or stored or ".")
        records = tuple(ImageRecord(r["path"], r["split"], int(r["label"]), r["patient"]) for r in rows)
        return cls(base, records, tuple(r["source_split"] for r in rows))


def grouped_split(records: list[ImageRecord], val_fraction: float, seed: int) -> set[str]:
    """Choose validation patients: stratified by class, grouped by patient.

    For each class, patients are shuffled with ``seed`` and taken into validation
    until their images reach ``val_fraction`` of that class's images.

    Returns:
        The set of ``(label, patient)`` keys (as ``"label/patient"`` strings) chosen for validation.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}.")
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for label in range(len(CLASSES)):
        sizes: dict[str, int] = {}
        for r in records:
            if r.label == label:
                sizes[r.patient] = sizes.get(r.patient, 0) + 1
        patients = sorted(sizes)
        rng.shuffle(patients)
        target = val_fraction * sum(sizes.values())
        taken = 0
        for p in patients:
            if taken >= target:
                break
            chosen.add(f"{label}/{p}")
            taken += sizes[p]
    return chosen


def make_splits(data_dir: str | os.PathLike, seed: int = 42, val_fraction: float = 0.15,
                save: bool = True) -> SplitManifest:
    """The leak-free split manifest of a Kaggle-layout folder.

    Args:
        data_dir: The ``chest_xray`` folder (needs ``train``, ``val`` and ``test``).
        seed: Seed of the patient shuffle (same seed, same manifest).
        val_fraction: Share of the merged train+val images (per class) for validation.
        save: Also write the manifest to :func:`manifest_file` (never inside the dataset).

    Returns:
        A :class:`SplitManifest` with splits ``train``, ``val`` (re-split, grouped by
        patient) and ``test`` (Kaggle's test folder unchanged).
    """
    data_dir = Path(data_dir).expanduser().absolute()
    records = list_images(data_dir)
    pool = [r for r in records if r.split in ("train", "val")]
    val_keys = grouped_split(pool, val_fraction, seed)
    new = []
    for r in records:
        split = r.split
        if split in ("train", "val"):
            split = "val" if f"{r.label}/{r.patient}" in val_keys else "train"
        new.append(ImageRecord(r.path, split, r.label, r.patient))
    manifest = SplitManifest(data_dir, tuple(new), tuple(r.split for r in records))
    if save:
        manifest.save(manifest_file(data_dir, seed, val_fraction))
    return manifest


def naive_random_split(data_dir: str | os.PathLike, seed: int = 42,
                       val_fraction: float = 0.15) -> SplitManifest:
    """A random re-split of train+val that ignores patients (for showing the leak only)."""
    data_dir = Path(data_dir).expanduser().absolute()
    records = list_images(data_dir)
    rng = np.random.default_rng(seed)
    is_val = rng.random(len(records)) < val_fraction
    new = [ImageRecord(r.path, r.split if r.split == "test" else ("val" if v else "train"),
                       r.label, r.patient) for r, v in zip(records, is_val)]
    return SplitManifest(data_dir, tuple(new), tuple(r.split for r in records))


def shared_patients(manifest: SplitManifest, a: str = "train", b: str = "val") -> set[str]:
    """Patients (as ``"label/patient"``) with images in both split ``a`` and split ``b``."""
    def keys(split):
        return {f"{r.label}/{r.patient}" for r in manifest.records if r.split == split}
    return keys(a) & keys(b)


def manifest_file(data_dir: str | os.PathLike, seed: int, val_fraction: float) -> Path:
    """Where the manifest of a dataset lives: ``<home>/splits/<name>-<hash>-seed<seed>-val<pct>.csv``."""
    data_dir = Path(data_dir).expanduser().absolute()
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:10]
    name = data_dir.parent.name or "data"
    return paths.pneumo_home() / "splits" / f"{name}-{digest}-seed{seed}-val{round(val_fraction * 100)}.csv"


def class_weights(labels) -> dict[int, float]:
    """Balanced class weights ``{0: w0, 1: w1}`` with ``w_c = N / (2 * N_c)``.

    Args:
        labels: Labels of the training split, 0/1 values, shape ``(N,)``.

    Raises:
        ValueError: A class is absent (its weight would be infinite).
    """
    y = np.asarray(labels).astype(int).ravel()
    counts = np.bincount(y, minlength=len(CLASSES))
    if (counts == 0).any():
        raise ValueError(f"Cannot weight classes: counts per class are {counts.tolist()} "
                         f"({', '.join(CLASSES)}); both classes are needed.")
    return {c: float(len(y) / (len(CLASSES) * counts[c])) for c in range(len(CLASSES))}
