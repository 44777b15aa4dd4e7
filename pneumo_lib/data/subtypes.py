"""Three classes from the file names: NORMAL, bacterial and viral pneumonia, and their split.

The Kaggle dataset (and the phantom, which copies its names) files PNEUMONIA images as
``person<N>_bacteria_<M>.jpeg`` or ``person<N>_virus_<M>.jpeg``; NORMAL images
(``IM-0115-0001.jpeg``, ``NORMAL2-IM-0372-0001.jpeg``) sit in the ``NORMAL`` folder.
:func:`subtype_label` reads the three classes from that, in the order of
:data:`THREE_CLASSES`: ``0 = NORMAL``, ``1 = bacterial``, ``2 = viral``.

:func:`three_class_split` takes the leak-free split of :func:`pneumo_lib.data.make_splits`
(Kaggle's train and val merged and re-split by patient, Kaggle's test kept) and checks that
it is stratified by all three classes too: in ``train`` and in ``val``, each class's share
of the images must be within ``tolerance`` (2 percentage points) of its share in the merged
train+val pool. The two-class split is kept when it already is (measured, recorded as
:attr:`ThreeClassSplit.reused`); otherwise train+val are re-split by patient, stratified by
the three classes. The test split is never changed (it is Kaggle's test folder): its
shares are reported, not forced. No patient is ever in two splits.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pneumo_lib.data.layout import ImageRecord
from pneumo_lib.data.splits import SplitManifest, make_splits

#: The three classes in label order.
THREE_CLASSES: tuple[str, str, str] = ("NORMAL", "bacterial", "viral")
#: Label of each class.
NORMAL, BACTERIAL, VIRAL = 0, 1, 2
#: Default largest gap between a class's share in ``train`` or ``val`` and in the train+val pool.
SHARE_TOLERANCE = 0.02

_KIND = re.compile(r"(?:^|(?<=[_\-]))(bacteria|virus)(?=[_\-]|$)", re.IGNORECASE)
_KIND_LABEL = {"bacteria": BACTERIAL, "virus": VIRAL}


class StratificationWarning(UserWarning):
    """A split's class shares are further than the tolerance from the pool's (too few patients)."""


def subtype_label(file_name: str | os.PathLike, label: int) -> int:
    """The three-class label of one image, from its two-class label and its file name.

    Args:
        file_name: The image's file name or path (only the name is read), e.g.
            ``"person1946_bacteria_4874.jpeg"``.
        label: Its folder label: 0 (``NORMAL``) or 1 (``PNEUMONIA``).

    Returns:
        0 (NORMAL) for a NORMAL image; 1 (bacterial) for a PNEUMONIA image whose name holds
        ``bacteria``, 2 (viral) for one whose name holds ``virus`` (as a ``_``- or
        ``-``-separated word, any case).

    Raises:
        ValueError: ``label`` is not 0 or 1; a PNEUMONIA image whose name says neither
            ``bacteria`` nor ``virus`` (or both); a NORMAL image whose name says one of them.
            The message names the file.
    """
    if label not in (0, 1):
        raise ValueError(f"label must be 0 (NORMAL) or 1 (PNEUMONIA), got {label!r} for {file_name}.")
    name = Path(file_name).name
    kinds = {m.lower() for m in _KIND.findall(Path(name).stem)}
    if label == 0:
        if kinds:
            raise ValueError(f"{file_name} is in a NORMAL folder but its name says {'/'.join(sorted(kinds))}: "
                             "move it to PNEUMONIA/ or rename it.")
        return NORMAL
    if len(kinds) != 1:
        said = "both 'bacteria' and 'virus'" if kinds else "neither 'bacteria' nor 'virus'"
        raise ValueError(
            f"PNEUMONIA image {file_name}: its name says {said}, so it cannot be read as bacterial or viral "
            "(Kaggle names: personN_bacteria_M.jpeg, personN_virus_M.jpeg). Rename it, or leave it out of the "
            "three-class dataset.")
    return _KIND_LABEL[kinds.pop()]


def record_label(record: ImageRecord) -> int:
    """:func:`subtype_label` of an :class:`~pneumo_lib.data.layout.ImageRecord` (0, 1 or 2)."""
    return subtype_label(record.path, record.label)


def class_weights3(labels) -> dict[int, float]:
    """Balanced weights of the three classes, ``w_c = N / (3 * N_c)`` (scikit-learn's "balanced").

    Args:
        labels: Training labels ``(N,)`` in {0, 1, 2}.

    Returns:
        ``{0: w_normal, 1: w_bacterial, 2: w_viral}``, positive floats (1.0 each when balanced).

    Raises:
        ValueError: Labels outside {0, 1, 2}, or a class absent (its weight would be infinite).
    """
    y = np.asarray(labels).reshape(-1)
    if y.size == 0 or not np.isin(y, (0, 1, 2)).all():
        raise ValueError(f"Three-class labels must be 0, 1 or 2 ({', '.join(THREE_CLASSES)}); "
                         f"got {sorted(set(y.tolist()))[:6] or 'none'}.")
    counts = np.bincount(y.astype(int), minlength=3)
    if (counts == 0).any():
        missing = [THREE_CLASSES[c] for c in range(3) if counts[c] == 0]
        raise ValueError(f"Cannot weight the classes: no {', '.join(missing)} image among the training labels "
                         f"(counts {dict(zip(THREE_CLASSES, counts.tolist()))}); all three classes are needed.")
    return {c: float(y.size / (3 * counts[c])) for c in range(3)}


@dataclass(frozen=True)
class ThreeClassSplit:
    """A patient-grouped split with three-class labels.

    Attributes:
        manifest: The two-class :class:`~pneumo_lib.data.splits.SplitManifest` (its
            ``label`` stays 0/1); ``split`` of each record is the three-class split's.
        classes: The three-class label (0, 1, 2) of every record, parallel to
            ``manifest.records``.
        reused: True when the two-class split already met the tolerance and is used as it is;
            False when train+val were re-split stratified by the three classes.
        tolerance: The largest share gap allowed in ``train`` and ``val``.
    """

    manifest: SplitManifest
    classes: tuple[int, ...]
    reused: bool
    tolerance: float = SHARE_TOLERANCE

    @property
    def data_dir(self) -> Path:
        """The ``chest_xray`` folder the paths are relative to."""
        return self.manifest.data_dir

    def _index(self, split: str) -> list[int]:
        self.manifest.select(split)  # raises on an empty / unknown split
        return [i for i, r in enumerate(self.manifest.records) if r.split == split]

    def labels(self, split: str) -> np.ndarray:
        """Three-class labels of one split: int64 ``(N,)`` in {0, 1, 2}, manifest order."""
        return np.array([self.classes[i] for i in self._index(split)], dtype=np.int64)

    def paths(self, split: str) -> list[Path]:
        """Absolute image paths of one split, parallel to :meth:`labels`."""
        return self.manifest.paths(split)

    def patients(self, split: str) -> list[str]:
        """Patient id of every image of one split, parallel to :meth:`labels` (for bootstrapping)."""
        return self.manifest.patients(split)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {"NORMAL": n, "bacterial": n, "viral": n}}`` for every split present."""
        out: dict[str, dict[str, int]] = {}
        for split in self.manifest.counts():
            y = self.labels(split)
            out[split] = {c: int((y == k).sum()) for k, c in enumerate(THREE_CLASSES)}
        return out

    def shares(self) -> dict[str, dict[str, float]]:
        """Each class's share of each split's images, in [0, 1], plus ``"pool"`` (train+val together)."""
        counts = self.counts()
        pool = {c: sum(counts.get(s, {}).get(c, 0) for s in ("train", "val")) for c in THREE_CLASSES}
        out = {}
        for split, row in {**counts, "pool": pool}.items():
            total = sum(row.values())
            out[split] = {c: (n / total if total else float("nan")) for c, n in row.items()}
        return out

    def share_gaps(self) -> dict[str, float]:
        """Per split, the largest ``|share(class, split) - share(class, pool)|`` over the classes.

        The test split is listed too (Kaggle's own test folder: reported, not forced).
        """
        shares = self.shares()
        pool = shares.pop("pool")
        return {s: max(abs(row[c] - pool[c]) for c in THREE_CLASSES) for s, row in shares.items()}

    def stratified(self) -> bool:
        """True when ``train`` and ``val`` are both within :attr:`tolerance` of the pool's shares."""
        gaps = self.share_gaps()
        return all(gaps.get(s, 0.0) <= self.tolerance + 1e-12 for s in ("train", "val"))

    def leaked_patients(self) -> set[str]:
        """Patients (``"label/patient"``) with images in more than one split (empty by construction)."""
        seen: dict[str, set[str]] = {}
        for r in self.manifest.records:
            seen.setdefault(f"{r.label}/{r.patient}", set()).add(r.split)
        return {p for p, splits in seen.items() if len(splits) > 1}

    def check_complete(self, splits: tuple[str, ...] = ("train", "val", "test")) -> None:
        """Raise unless every class has at least one image in every one of ``splits``.

        Raises:
            ValueError: Names the split(s) and class(es) that are missing, and the counts.
        """
        counts = self.counts()
        missing = [f"{split} has no {c} image" for split in splits
                   for c in THREE_CLASSES if counts.get(split, {}).get(c, 0) == 0]
        if missing:
            raise ValueError(
                f"The dataset at {self.data_dir} cannot be used for three classes: {'; '.join(missing)} "
                f"(counts {counts}). Every split needs NORMAL, bacterial and viral images: use a larger "
                "dataset (e.g. the quick phantom) or one whose PNEUMONIA names include both "
                "_bacteria_ and _virus_.")


def _resplit(records: list[ImageRecord], classes: list[int], val_fraction: float, seed: int) -> set[str]:
    """Validation patients of train+val, grouped by patient and stratified by the three classes.

    A patient counts for the class most of their images have (ties: the lower label). Per
    class, patients are shuffled with ``seed`` and taken while that brings the class's
    validation images closer to ``val_fraction`` of its images, so each class lands within
    half a patient's images of its target.
    """
    rng = np.random.default_rng(seed)
    per_patient: dict[str, np.ndarray] = {}
    for r, c in zip(records, classes):
        key = f"{r.label}/{r.patient}"
        per_patient.setdefault(key, np.zeros(3, int))[c] += 1
    chosen: set[str] = set()
    for c in range(3):
        patients = sorted(k for k, v in per_patient.items() if int(v.argmax()) == c)
        rng.shuffle(patients)
        target = val_fraction * sum(int(per_patient[k].sum()) for k in patients)
        taken = 0
        for key in patients:
            size = int(per_patient[key].sum())
            if taken >= target or abs(taken + size - target) >= abs(taken - target):
                continue  # this patient would overshoot; a smaller one later may fit
            chosen.add(key)
            taken += size
    return chosen


def three_class_split(source: SplitManifest | str | os.PathLike, *, seed: int = 42,
                      val_fraction: float = 0.15, tolerance: float = SHARE_TOLERANCE,
                      require_all: bool = True) -> ThreeClassSplit:
    """Three-class labels per split, from a split manifest or a dataset folder.

    Args:
        source: A :class:`~pneumo_lib.data.splits.SplitManifest` (e.g. ``data.make_splits(...)``)
            or a ``chest_xray`` folder in the Kaggle layout (split with
            :func:`~pneumo_lib.data.make_splits` and ``seed``, ``val_fraction``; not saved).
        seed: Seed of the patient shuffle (for a folder, and for a re-split).
        val_fraction: Share of each class's train+val images that go to validation when
            re-splitting, in (0, 1).
        tolerance: Largest gap allowed between a class's share in ``train`` or ``val`` and
            its share in the train+val pool, in [0, 1) (default 0.02: 2 points).
        require_all: Raise when a class is missing from a split (:meth:`ThreeClassSplit.check_complete`).

    Returns:
        A :class:`ThreeClassSplit`: the given split when it already meets ``tolerance``
        (``reused=True``), else train+val re-split by patient and stratified by the three
        classes (``reused=False``). Test is never changed. When even the re-split misses
        the tolerance (a dataset of few patients), a :class:`StratificationWarning` says by
        how much.

    Raises:
        ValueError: A PNEUMONIA file whose name says neither bacteria nor virus (named), a
            class missing from a split (with ``require_all``), ``tolerance`` or
            ``val_fraction`` out of range.
    """
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"tolerance must be in [0, 1) (a share gap, e.g. 0.02), got {tolerance}.")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}.")
    manifest = source if isinstance(source, SplitManifest) else make_splits(source, seed=seed,
                                                                          val_fraction=val_fraction, save=False)
    classes = tuple(record_label(r) for r in manifest.records)
    result = ThreeClassSplit(manifest, classes, reused=True, tolerance=tolerance)
    if not result.stratified():
        pool = [i for i, r in enumerate(manifest.records) if r.split in ("train", "val")]
        val = _resplit([manifest.records[i] for i in pool], [classes[i] for i in pool], val_fraction, seed)
        records = tuple(
            r if r.split not in ("train", "val") else ImageRecord(
                r.path, "val" if f"{r.label}/{r.patient}" in val else "train", r.label, r.patient)
            for r in manifest.records)
        new = SplitManifest(manifest.data_dir, records, manifest.source_splits)
        result = ThreeClassSplit(new, classes, reused=False, tolerance=tolerance)
        if not result.stratified():
            gaps = result.share_gaps()
            warnings.warn(StratificationWarning(
                f"Three-class shares in {manifest.data_dir}: train is {gaps.get('train', 0) * 100:.1f} and val "
                f"{gaps.get('val', 0) * 100:.1f} points from the train+val pool (tolerance "
                f"{tolerance * 100:.1f}); too few patients to do better."), stacklevel=2)
    if require_all:
        result.check_complete()
    return result
