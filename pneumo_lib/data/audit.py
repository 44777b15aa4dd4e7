"""Audit a dataset folder before trusting it: ``audit(data_dir)``.

Counts per split and class, unreadable or non-image files (named, never deleted),
symbolic-link loops and broken links, colour modes, image sizes, duplicate images
(by content hash) and patients that appear in more than one split. The audit only
reads files, decodes at most one frame of a DICOM and never more than
:data:`~pneumo_lib.data.images.MAX_PIXELS` pixels of any file.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pneumo_lib.data.images import (
    DICOM_SUFFIXES,
    MAX_PIXELS,
    FramesWarning,
    ImageReadError,
    open_image,
    read_image,
)
from pneumo_lib.data.layout import (
    CLASSES,
    SPLITS,
    check_layout,
    is_image_name,
    link_problem,
    patient_id,
    resolve_data_dir,
)


@dataclass
class AuditReport:
    """What :func:`audit` found.

    Attributes:
        data_dir: The audited ``chest_xray`` folder.
        counts: Readable images, ``{split: {class: n}}``.
        problems: Layout problems (missing split or class folders, empty class
            folders, a layout nested one level too deep), one sentence each.
        unreadable: ``[(relative path, reason)]`` for files that look like images but cannot be
            read, and for symbolic-link loops and broken links.
        notes: ``[(relative path, note)]`` for readable images with a caveat (a multi-frame
            DICOM of which only the first frame is used).
        ignored: Relative paths of non-image files (``.DS_Store`` and the like).
        modes: Colour modes, ``{class: {mode: n}}`` (``L`` grayscale, ``RGB``, ``CMYK``, ``I;16`` ...).
        sizes: ``{class: int array (N, 2)}`` of ``(width, height)`` in pixels.
        duplicates: Groups of relative paths with identical bytes (2+ files each).
        shared_patients: ``{"train/test": [patient, ...]}`` for patients in two splits.
    """

    data_dir: Path
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    modes: dict[str, Counter] = field(default_factory=dict)
    sizes: dict[str, np.ndarray] = field(default_factory=dict)
    duplicates: list[list[str]] = field(default_factory=list)
    shared_patients: dict[str, list[str]] = field(default_factory=dict)

    @property
    def cross_split_duplicates(self) -> list[list[str]]:
        """Duplicate groups whose files sit in more than one split."""
        return [g for g in self.duplicates if len({p.split("/")[0] for p in g}) > 1]

    @property
    def ok(self) -> bool:
        """True when there are no layout problems, unreadable files or cross-split leaks."""
        return not (self.problems or self.unreadable or self.cross_split_duplicates
                    or any(self.shared_patients.values()))

    def summary(self) -> str:
        """A short human-readable report (one line per finding)."""
        lines = [f"Audit of {self.data_dir}"]
        for split, per_class in self.counts.items():
            total = sum(per_class.values())
            lines.append(f"  {split:<5} " + "  ".join(f"{c} {n:>5}" for c, n in per_class.items())
                         + f"  total {total:>5}")
        for cls, counter in self.modes.items():
            lines.append(f"  modes {cls}: " + ", ".join(f"{m} {n}" for m, n in sorted(counter.items())))
        for cls, wh in self.sizes.items():
            if len(wh):
                lines.append(f"  sizes {cls}: width {int(wh[:, 0].min())}-{int(wh[:, 0].max())} "
                             f"(median {int(np.median(wh[:, 0]))}), height {int(wh[:, 1].min())}-"
                             f"{int(wh[:, 1].max())} (median {int(np.median(wh[:, 1]))})")
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  unreadable: {p}: {why}" for p, why in self.unreadable]
        lines += [f"  note: {p}: {why}" for p, why in self.notes]
        if self.ignored:
            lines.append(f"  ignored {len(self.ignored)} non-image file(s), e.g. {self.ignored[0]}")
        lines.append(f"  duplicate groups: {len(self.duplicates)} "
                     f"({len(self.cross_split_duplicates)} across splits)")
        for pair, patients in self.shared_patients.items():
            if patients:
                lines.append(f"  patients in both {pair}: {len(patients)}, e.g. {patients[0]}")
        lines.append("  OK" if self.ok else "  NOT OK: see above")
        return "\n".join(lines)


def _link_problem(entry: Path) -> str | None:
    """Why a symbolic link cannot be followed (a loop, broken, or leading to a folder that holds it), else None."""
    why = link_problem(entry)
    if why:
        return why
    target, parent = entry.resolve(), entry.parent.resolve()
    if entry.is_dir() and (target == parent or target in parent.parents):
        return "symbolic-link loop (a link to a folder that contains it); remove the link"
    return None


def _probe(file: Path, max_pixels: int) -> tuple[str, tuple[int, int]]:
    """Mode and size of an image, decoding it fully to catch truncation (JPEGs at 1/8 scale)."""
    if file.stat().st_size == 0:
        raise ImageReadError("empty file (0 bytes)")
    if file.suffix.lower() in DICOM_SUFFIXES:
        arr = read_image(file, max_pixels)
        return "DICOM", (arr.shape[1], arr.shape[0])
    with open_image(file, max_pixels) as im:
        mode, size = im.mode, im.size
        if not im.tile:  # Pillow found no image data (a JPEG header that ends before its scan)
            raise ImageReadError("could not be decoded (a header that ends before its image data); "
                                 "the file is corrupt")
        if im.format == "JPEG":  # decode at 1/8 scale: enough to find truncation, 10x faster
            im.draft(im.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
        try:
            im.load()
        except Exception as err:  # Pillow raises several types for broken data
            raise ImageReadError(f"{type(err).__name__}: {err}") from None
    return mode, size


def audit(data_dir: str | os.PathLike, splits: tuple[str, ...] = SPLITS,
          max_pixels: int = MAX_PIXELS) -> AuditReport:
    """Audit a ``chest_xray`` folder (reads every file, changes nothing).

    Args:
        data_dir: The ``chest_xray`` folder, the folder holding it, or the Kaggle archive's
            nested layout (see :func:`~pneumo_lib.data.layout.resolve_data_dir`).
        splits: The splits expected (``("val",)`` for the 16-image sample).
        max_pixels: Images larger than this are reported as unreadable.

    Returns:
        An :class:`AuditReport`; layout problems are reported in it, not raised.
    """
    root = resolve_data_dir(data_dir, splits, check=False)
    report = AuditReport(root)
    try:
        check_layout(root, splits)
    except (FileNotFoundError, ValueError) as err:
        report.problems.append(str(err))
    by_hash: dict[str, list[str]] = defaultdict(list)
    patients: dict[str, set[str]] = defaultdict(set)
    sizes: dict[str, list] = {c: [] for c in CLASSES}
    report.modes = {c: Counter() for c in CLASSES}
    for split in splits:
        report.counts[split] = {c: 0 for c in CLASSES}
        for label, cls in enumerate(CLASSES):
            folder = root / split / cls
            for linked in (root / split, folder) if cls == CLASSES[0] else (folder,):
                why = link_problem(linked)
                if why:  # a split or class folder that is a loop or a broken link: named, and the audit goes on
                    report.unreadable.append((linked.relative_to(root).as_posix(), why))
            if not folder.is_dir():
                continue
            for file in sorted(folder.rglob("*")):
                rel = file.relative_to(root).as_posix()
                if file.is_symlink():
                    why = _link_problem(file)
                    if why:
                        report.unreadable.append((rel, why))
                        continue
                if not file.is_file():
                    continue
                if not is_image_name(file.name):
                    report.ignored.append(rel)
                    continue
                if file.parent != folder:
                    report.problems.append(f"{rel} sits below the class folder; images must be "
                                           f"directly in {split}/{cls}/.")
                    continue
                try:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always", FramesWarning)
                        mode, size = _probe(file, max_pixels)
                except (ImageReadError, OSError) as err:
                    report.unreadable.append((rel, str(err).replace(str(file), "").strip(" :")))
                    continue
                report.notes += [(rel, str(w.message).replace(str(file), "").strip(" :"))
                                 for w in caught if issubclass(w.category, FramesWarning)]
                report.counts[split][cls] += 1
                report.modes[cls][mode] += 1
                sizes[cls].append(size)
                by_hash[hashlib.sha1(file.read_bytes()).hexdigest()].append(rel)
                patients[f"{label}/{patient_id(file.name, label)}"].add(split)
    report.sizes = {c: np.array(v, dtype=np.int64).reshape(-1, 2) for c, v in sizes.items()}
    report.duplicates = [sorted(g) for g in by_hash.values() if len(g) > 1]
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            report.shared_patients[f"{a}/{b}"] = sorted(
                p.split("/", 1)[1] for p, s in patients.items() if {a, b} <= s)
    return report
