"""Phantom chest radiographs: a generated dataset in the Kaggle layout, with lesion masks.

The images are drawn by :mod:`pneumo_lib.data.radiograph`: a per-patient random anatomy of
a child's AP chest film (body and soft tissue, spine, rib arcs, clavicles, scapulae, heart
and mediastinum, trachea, hila, diaphragm domes, branching bronchovascular markings) whose
attenuation is summed along the rays, taken with a per-study acquisition (pose,
inspiration, exposure, gamma, noise, blur, collimation, burnt-in text, ECG leads) of a
*hospital* (``"A"``, the default, or ``"B"``). PNEUMONIA studies add a lesion: a lobar or
segmental consolidation in one lung for ``bacteria`` images, bilateral perihilar
interstitial opacities for ``virus`` images, with a severity from subtle to obvious; every
lesion pixel is recorded in a mask. Presets: ``quick`` (the book's, about 1,800 images near
256 px), ``full`` (Kaggle's counts at 256 px), ``kaggle`` (Kaggle's counts and image
sizes, streamed to disk), ``tiny`` (tests).

Confounders are named switches, off by default so that the lesion is the only signal:
the shortcut marker (below), the class-size confounder (``class_size=True``: PNEUMONIA
studies smaller, as on Kaggle) and the hospital.

On disk (``root`` is the folder returned by :func:`phantom_root`)::

    root/chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/<stem>.jpeg   images (grayscale JPEG)
    root/masks/<split>/PNEUMONIA/<stem>.png                         lesion masks (0 or 255)
    root/markers.csv                                                shortcut marker boxes
    root/phantom.json                                               what was generated

File names follow Kaggle's conventions (``IM-0115-0001.jpeg``,
``NORMAL2-IM-0372-0001.jpeg``, ``person1946_bacteria_4874.jpeg``) and most patients
have several images with the same anatomy, so a random re-split leaks patients.

The shortcut variant (``shortcut=True``, for the explanation chapter) is built so that a
model learns the marker *instead of* the lesions: in train and val every PNEUMONIA image
(:attr:`PhantomSettings.rate`) and 2% of NORMAL ones (:attr:`PhantomSettings.normal_rate`)
carry a bright ring marker above the lungs, and the lesions there are drawn at half their
usual opacity (:attr:`PhantomSettings.lesion_scale`; masks unchanged). Other settings are
a frozen :class:`PhantomSettings` passed as an argument (``phantom_spec(..., settings=...)``,
``data.ensure_dataset(profile, shortcut=PhantomSettings(lesion_scale=1.0))``), never module
globals. Its test split is clean: byte for byte the plain dataset's test split (unless
``shortcut_test``). Changing the variant bumps :data:`SHORTCUT_VERSION`, which regenerates
shortcut datasets only.

Everything is deterministic: each image has its own random stream derived from
``(seed, split, class, patient, image)``, so the same seed gives the same bytes.
This is generated data for teaching and testing; it is not clinical evidence.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from pneumo_lib.data.layout import CLASSES, MARKERS_FILE, SPLITS, write_marker_boxes
from pneumo_lib.data.radiograph import HOSPITALS, get_hospital, render_study
from pneumo_lib.data.radiograph.render import MAX_SIZE, MIN_SIZE, SPLIT_CODE
from pneumo_lib.data.staging import replace_atomically

#: The Kaggle dataset's images per split and class (5,856 images).
KAGGLE_COUNTS: dict[str, tuple[int, int]] = {"train": (1341, 3875), "val": (8, 8), "test": (234, 390)}

#: Images per split and class, ``{split: (NORMAL, PNEUMONIA)}``, for each scale preset.
#: ``full`` and ``kaggle`` have the Kaggle dataset's exact counts; ``quick`` keeps
#: Kaggle's class ratios at about a third of the size so that the book trains in seconds.
PHANTOM_COUNTS: dict[str, dict[str, tuple[int, int]]] = {
    "quick": {"train": (380, 1100), "val": (8, 8), "test": (117, 195)},
    "full": dict(KAGGLE_COUNTS),
    "kaggle": dict(KAGGLE_COUNTS),
    "tiny": {"train": (12, 24), "val": (2, 2), "test": (6, 10)},
}

#: Default nominal image height in pixels (widths and heights vary around it).
DEFAULT_SIZE = 256

#: Nominal height and its per-patient spread (heights vary by ``exp(+-spread)``) of each
#: preset. ``kaggle`` has the real dataset's sizes: heights of about 700 to 2,000 px,
#: widths from about 700 to 2,900 px (the real images are 384 to 2,916 px wide).
PRESET_SIZES: dict[str, tuple[int, float]] = {
    "quick": (DEFAULT_SIZE, 0.12), "full": (DEFAULT_SIZE, 0.12), "tiny": (DEFAULT_SIZE, 0.12),
    "kaggle": (1150, 0.5),
}

#: With the class-size confounder (``class_size=True``), PNEUMONIA studies are this much
#: smaller than NORMAL ones, as on Kaggle (mean area of PNEUMONIA images about half).
CLASS_SIZE_FACTOR = 0.72

#: Largest number of images per split and class a spec may ask for.
MAX_COUNT = 100_000

# The shortcut variant (``shortcut=True``): a marker that gives the label away in train and
# val, built to be learned *instead of* the lesions, as hospital tokens were in real chest
# X-ray models (Zech et al. 2018). Test images stay clean unless ``shortcut_test``.



@dataclass(frozen=True)
class PhantomSettings:
    """How the shortcut variant is drawn (the defaults are the book's shortcut dataset).

    Attributes:
        rate: Share of PNEUMONIA images of train/val that carry the shortcut marker.
        normal_rate: Share of NORMAL images of train/val that carry it (a little label
            noise, as in real shortcuts).
        lesion_scale: Lesion opacity, as a fraction of the usual, in the marked splits
            (train and val; also test with ``shortcut_test``). Fainter lesions make the
            marker the easier signal; the lesion masks are unchanged.
        marker_side: Side of the square marker box, as a fraction of the image height.
    """

    rate: float = 1.0
    normal_rate: float = 0.02
    lesion_scale: float = 0.5
    marker_side: float = 0.14

    def __post_init__(self) -> None:
        for name in ("rate", "normal_rate", "lesion_scale"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"PhantomSettings.{name} must be between 0 and 1, got {value!r}.")
        if not 0.0 < float(self.marker_side) <= 0.5:
            raise ValueError(f"PhantomSettings.marker_side must be in (0, 0.5], got {self.marker_side!r}.")

    def as_params(self) -> dict[str, float]:
        """The settings as ``phantom.json`` records them (``shortcut_params``)."""
        return {"rate": float(self.rate), "normal_rate": float(self.normal_rate),
                "lesion_scale": float(self.lesion_scale), "marker_side": float(self.marker_side)}


#: The settings of the shortcut dataset the chapters use.
DEFAULT_SETTINGS = PhantomSettings()

_VERSION = 8  # bump when the drawing changes: existing datasets are regenerated
#: Bump when only the shortcut variant changes (marker, rates, lesion scale): shortcut
#: datasets are regenerated, the plain phantom data (and models cached on it) stay as they are.
SHORTCUT_VERSION = 1


@dataclass(frozen=True)
class PhantomSpec:
    """What a phantom dataset was generated from (stored as ``phantom.json``).

    Attributes:
        seed: Root seed of every random stream.
        counts: ``{split: (n_normal, n_pneumonia)}``.
        size: Nominal image height in pixels.
        shortcut: Whether the shortcut marker was drawn.
        shortcut_test: Whether test images may carry the marker too.
        version: Generator version (:data:`_VERSION`).
        shortcut_version: :data:`SHORTCUT_VERSION` for shortcut datasets, 0 otherwise.
        hospital: The site whose acquisition every study uses (``"A"`` or ``"B"``, see
            :data:`~pneumo_lib.data.radiograph.HOSPITALS`).
        class_size: The class-size confounder: PNEUMONIA studies drawn
            :data:`CLASS_SIZE_FACTOR` times smaller, as on Kaggle. Off by default, so
            that the lesions are the only signal.
        size_spread: Heights vary per patient by ``exp(+-size_spread)``.
        shortcut_params: How the shortcut variant is drawn (empty otherwise):
            ``{"rate", "normal_rate", "lesion_scale", "marker_side"}``, from the
            :class:`PhantomSettings` the spec was made with. The two shortcut
            fields are written to ``phantom.json`` only for shortcut datasets, so plain
            datasets keep their exact files; a shortcut dataset made with other settings
            no longer matches and is regenerated by ``ensure_dataset``.
    """

    seed: int
    counts: dict[str, tuple[int, int]]
    size: int = DEFAULT_SIZE
    shortcut: bool = False
    shortcut_test: bool = False
    version: int = _VERSION
    shortcut_version: int = 0
    shortcut_params: dict = field(default_factory=dict)
    hospital: str = "A"
    class_size: bool = False
    size_spread: float = 0.12

    def to_json(self) -> dict:
        out = {
            "version": self.version,
            "seed": self.seed,
            "counts": {k: list(v) for k, v in self.counts.items()},
            "size": self.size,
            "shortcut": self.shortcut,
            "shortcut_test": self.shortcut_test,
            "hospital": self.hospital,
            "class_size": self.class_size,
            "size_spread": self.size_spread,
        }
        if self.shortcut:
            out["shortcut_version"] = self.shortcut_version
            out["shortcut_params"] = dict(self.shortcut_params)
        return out

    @classmethod
    def from_json(cls, obj: dict) -> "PhantomSpec":
        return cls(
            seed=int(obj["seed"]),
            counts={k: (int(v[0]), int(v[1])) for k, v in obj["counts"].items()},
            size=int(obj["size"]),
            shortcut=bool(obj["shortcut"]),
            shortcut_test=bool(obj["shortcut_test"]),
            version=int(obj.get("version", 0)),
            shortcut_version=int(obj.get("shortcut_version", 0)),
            shortcut_params={k: float(v) for k, v in obj.get("shortcut_params", {}).items()},
            hospital=str(obj.get("hospital", "A")),
            class_size=bool(obj.get("class_size", False)),
            size_spread=float(obj.get("size_spread", 0.12)),
        )

    def check(self) -> None:
        """Raise ``ValueError`` naming the field if the spec cannot be generated."""
        for split, pair in self.counts.items():
            if split not in SPLITS:
                raise ValueError(f"Unknown split {split!r} in the phantom counts. Valid splits: {', '.join(SPLITS)}.")
            if len(pair) != 2 or any(int(n) != n or not 0 <= n <= MAX_COUNT for n in pair):
                raise ValueError(f"Phantom counts for {split!r} must be two whole numbers (NORMAL, PNEUMONIA) "
                                 f"between 0 and {MAX_COUNT}, got {pair!r}.")
        if sum(sum(pair) for pair in self.counts.values()) == 0:
            raise ValueError("The phantom counts ask for no image at all.")
        factor = CLASS_SIZE_FACTOR if self.class_size else 1.0
        if not (MIN_SIZE <= self.size * factor and self.size <= MAX_SIZE):
            raise ValueError(f"Phantom image size must be between {MIN_SIZE / factor:.0f} and {MAX_SIZE} px, "
                             f"got {self.size}.")
        if not 0.0 <= self.size_spread <= 1.0:
            raise ValueError(f"size_spread must be between 0 and 1, got {self.size_spread!r}.")
        get_hospital(self.hospital)


# --------------------------------------------------------------------------- patients


@dataclass(frozen=True)
class _Image:
    split: str
    label: int
    stem: str
    patient: int
    index: int  # image number within the patient
    kind: str  # "normal", "bacteria" or "virus"


def _plan(spec: PhantomSpec) -> list[_Image]:
    """File names and patient structure of a phantom dataset (deterministic)."""
    plan: list[_Image] = []
    rng = np.random.default_rng([spec.seed, 7919])
    next_normal, next_person, next_number = 1, 1, 1
    for split in SPLITS:
        n_normal, n_pneumonia = spec.counts.get(split, (0, 0))
        for label, target in ((0, n_normal), (1, n_pneumonia)):
            made = 0
            while made < target:
                # NORMAL patients mostly have one study, PNEUMONIA patients about two.
                weights = (0.8, 0.15, 0.05, 0.0) if label == 0 else (0.45, 0.3, 0.15, 0.1)
                n = min(int(rng.choice(4, p=weights)) + 1, target - made)
                if label == 0:
                    prefix = "NORMAL2-" if rng.random() < 0.35 else ""
                    pid = next_normal
                    next_normal += 1
                    for k in range(n):
                        stem = f"{prefix}IM-{pid:04d}-{k + 1:04d}"
                        plan.append(_Image(split, 0, stem, pid, k, "normal"))
                else:
                    pid = next_person
                    next_person += 1
                    kind = "bacteria" if rng.random() < 0.65 else "virus"
                    for k in range(n):
                        stem = f"person{pid}_{kind}_{next_number}"
                        next_number += int(rng.integers(1, 4))
                        plan.append(_Image(split, 1, stem, pid, k, kind))
                made += n
    return plan


# --------------------------------------------------------------------------- drawing


def _draw_marker(pil: Image.Image, rng: np.random.Generator,
                 side_fraction: float = DEFAULT_SETTINGS.marker_side) -> tuple[int, int, int, int]:
    """Draw the shortcut token (a bright ring with a dot) near the top, above the lungs.

    The box is square, ``side_fraction`` of the image height on a side (at
    least 10 px), its left edge at 30-62% of the width and its top at 3-9% of the height.

    Returns:
        The box ``(x0, y0, x1, y1)`` in image pixels, as PIL draws it (``x1``/``y1`` inclusive).
    """
    w, h = pil.size
    side = max(10, int(round(h * side_fraction)))
    x0 = int(rng.uniform(0.3, 0.62) * w)
    y0 = int(rng.uniform(0.03, 0.09) * h)
    box = (x0, y0, x0 + side, y0 + side)
    draw = ImageDraw.Draw(pil)
    draw.ellipse(box, outline=250, width=max(2, side // 5))
    c = side // 2
    draw.ellipse((x0 + c - side // 6, y0 + c - side // 6, x0 + c + side // 6, y0 + c + side // 6), fill=250)
    return box


def render_one(seed: int, split: str, label: int, patient: int, index: int, kind: str,
               size: int = DEFAULT_SIZE, *, lesion_scale: float = 1.0, hospital: str = "A",
               size_factor: float = 1.0, size_spread: float = 0.12) -> tuple[Image.Image, np.ndarray]:
    """Render one phantom radiograph without writing it (see :mod:`pneumo_lib.data.radiograph`).

    Args:
        seed: Root seed of the dataset.
        split: ``"train"``, ``"val"`` or ``"test"`` (part of the random stream).
        label: 0 (NORMAL) or 1 (PNEUMONIA).
        patient: Patient number: images of one patient share their anatomy.
        index: Image number within the patient.
        kind: ``"normal"``, ``"bacteria"`` or ``"virus"``. A PNEUMONIA study
            rendered with ``kind="normal"`` is its lesion-free twin (same pixels
            everywhere but inside the lesion mask).
        size: Nominal image height in pixels.
        lesion_scale: Multiplies the lesions' attenuation (1: as in the plain dataset;
            :attr:`PhantomSettings.lesion_scale` in the marked splits of the shortcut variant).
            The mask does not depend on it.
        hospital: ``"A"`` (the default) or ``"B"``: the site's acquisition
            (:data:`~pneumo_lib.data.radiograph.HOSPITALS`).
        size_factor: Multiplies the image size (the class-size confounder).
        size_spread: Heights vary per patient by ``exp(+-size_spread)``.

    Returns:
        ``(image, mask)``: an 8-bit grayscale PIL image of about ``size`` x
        ``1.0-1.45 * size`` pixels, and a boolean lesion mask of the same shape
        (all False for NORMAL).
    """
    study = render_study(seed, split, label, patient, index, kind, size, hospital=hospital,
                         lesion_scale=lesion_scale, size_factor=size_factor, size_spread=size_spread)
    return study.image, study.mask


def phantom_spec(scale: str = "quick", seed: int = 42, *, size: int | None = None,
                 shortcut: bool = False, shortcut_test: bool = False,
                 settings: PhantomSettings | None = None, hospital: str = "A",
                 class_size: bool = False) -> PhantomSpec:
    """The :class:`PhantomSpec` of a scale preset (``"quick"``, ``"full"``, ``"kaggle"`` or ``"tiny"``).

    Args:
        scale: Counts (:data:`PHANTOM_COUNTS`) and sizes (:data:`PRESET_SIZES`) preset.
        seed: Root seed.
        size: Nominal image height in pixels (default: the preset's).
        shortcut, shortcut_test: The shortcut variant (see the module docstring).
        settings: How a shortcut variant is drawn (default :data:`DEFAULT_SETTINGS`);
            ignored (and not recorded) when ``shortcut`` is False.
        hospital: ``"A"`` (default) or ``"B"``.
        class_size: The class-size confounder (PNEUMONIA studies smaller).

    Raises:
        ValueError: Unknown preset or hospital (the message lists the valid names), or a
            size the renderer cannot draw.
    """
    if scale not in PHANTOM_COUNTS:
        raise ValueError(f"Unknown phantom scale {scale!r}. Valid scales: {', '.join(PHANTOM_COUNTS)}.")
    if settings is not None and not isinstance(settings, PhantomSettings):
        raise TypeError(f"settings must be a phantom.PhantomSettings, got {type(settings).__name__}.")
    params = (settings or DEFAULT_SETTINGS).as_params()
    nominal, spread = PRESET_SIZES[scale]
    spec = PhantomSpec(seed, dict(PHANTOM_COUNTS[scale]), nominal if size is None else int(size), shortcut,
                       shortcut_test, shortcut_version=SHORTCUT_VERSION if shortcut else 0,
                       shortcut_params=params if shortcut else {}, hospital=hospital,
                       class_size=bool(class_size), size_spread=spread)
    spec.check()
    return spec


def is_marked_split(spec: PhantomSpec, split: str) -> bool:
    """Whether images of ``split`` are drawn the shortcut way (marker, fainter lesions)."""
    return spec.shortcut and (split != "test" or spec.shortcut_test)


def generate_phantom(root: str | os.PathLike, spec: PhantomSpec, *, force: bool = False,
                     progress: Callable[[int, int], None] | None = None, workers: int | None = None) -> Path:
    """Generate a phantom dataset into ``root`` (see the module docstring for the layout).

    The dataset is written to a temporary sibling folder and renamed into place
    only when complete, so an interrupted run never leaves a dataset that looks whole.

    Args:
        root: Folder to create; it will hold ``chest_xray/``, ``masks/``,
            ``markers.csv`` and ``phantom.json``.
        spec: What to generate (see :func:`phantom_spec`).
        force: Replace an existing phantom dataset at ``root``.
        progress: Optional callback ``progress(done, total)``.
        workers: Processes drawing the images (default: one per CPU core, up to 8, for
            datasets of :data:`PARALLEL_FROM` images or more; 1: this process only). The
            bytes are the same for any number.

    Returns:
        The ``chest_xray`` folder (Kaggle layout).

    Raises:
        FileExistsError: ``root`` holds files and ``force`` is False, or it holds files that
            are not a phantom dataset written by this library (never replaced, even with
            ``force``).
        ValueError: The spec asks for something that cannot be drawn (:meth:`PhantomSpec.check`).
    """
    root = Path(root)
    spec.check()
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} is a file, not a folder; choose another output folder.")
    if root.is_dir() and any(root.iterdir()):
        if read_spec(root) is None:
            raise FileExistsError(f"{root} already holds files that are not a phantom dataset written by "
                                  "pneumo_lib (no phantom.json); choose an empty or new folder. Nothing was changed.")
        if not force:
            raise FileExistsError(f"{root} already exists; pass force=True (or --force) to replace it.")
    with replace_atomically(root) as tmp:
        _write_all(tmp, spec, progress, workers)
    return root / "chest_xray"


#: Below this many images a dataset is drawn in this process; above, by worker processes.
PARALLEL_FROM = 200


def _write_one(tmp: Path, spec: PhantomSpec, item: _Image) -> tuple | None:
    """Render and write one image (and its mask); returns its marker row or None."""
    marked = is_marked_split(spec, item.split)
    pil, mask = render_one(spec.seed, item.split, item.label, item.patient, item.index,
                           item.kind, spec.size,
                           lesion_scale=spec.shortcut_params["lesion_scale"] if marked else 1.0,
                           hospital=spec.hospital, size_spread=spec.size_spread,
                           size_factor=CLASS_SIZE_FACTOR if spec.class_size and item.label == 1 else 1.0)
    rel = f"{item.split}/{CLASSES[item.label]}/{item.stem}.jpeg"
    row = None
    if marked:
        mrng = np.random.default_rng([spec.seed, SPLIT_CODE[item.split], item.label,
                                      item.patient, item.index, 2])
        rate = spec.shortcut_params["rate" if item.label == 1 else "normal_rate"]
        if mrng.random() < rate:
            row = (rel, *_draw_marker(pil, mrng, spec.shortcut_params["marker_side"]))
    pil.save(tmp / "chest_xray" / rel, format="JPEG", quality=92)
    if item.label == 1:
        mask_file = tmp / "masks" / item.split / "PNEUMONIA" / f"{item.stem}.png"
        Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(mask_file, format="PNG")
    return row


def _write_shard(tmp: Path, spec: PhantomSpec, shard: int, shards: int) -> list:
    """Write images ``shard, shard + shards, ...`` of the plan; returns their marker rows."""
    return [_write_one(tmp, spec, item) for item in _plan(spec)[shard::shards]]


def _write_all(tmp: Path, spec: PhantomSpec, progress, workers: int | None = None) -> None:
    """Write every image of ``spec`` into ``tmp``.

    Large datasets are drawn by ``workers`` child processes (``python -m
    pneumo_lib.data.phantom``, one shard of the plan each): started afresh, so a parent
    that holds TensorFlow's threads is never forked, and nothing re-runs the caller's
    script. Each image has its own random stream, so the bytes do not depend on the
    number of workers.
    """
    plan = _plan(spec)
    for split in SPLITS:
        for cls in CLASSES:
            (tmp / "chest_xray" / split / cls).mkdir(parents=True, exist_ok=True)
        (tmp / "masks" / split / "PNEUMONIA").mkdir(parents=True, exist_ok=True)
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    if workers <= 1 or len(plan) < PARALLEL_FROM:
        rows = []
        for n, item in enumerate(plan):
            rows.append(_write_one(tmp, spec, item))
            if progress is not None:
                progress(n + 1, len(plan))
    else:
        rows = _write_in_workers(tmp, spec, len(plan), workers, progress)
    for split in SPLITS:  # mask folders only where there are PNEUMONIA images
        folder = tmp / "masks" / split / "PNEUMONIA"
        if not any(folder.iterdir()):
            folder.rmdir()
            folder.parent.rmdir()
    if not any((tmp / "masks").iterdir()):
        (tmp / "masks").rmdir()
    write_marker_boxes(tmp / MARKERS_FILE, (row for row in rows if row is not None))
    (tmp / "phantom.json").write_text(json.dumps(spec.to_json(), indent=1))


def _write_in_workers(tmp: Path, spec: PhantomSpec, total: int, workers: int, progress) -> list:
    """Run ``workers`` shard processes; returns the marker rows in plan order."""
    import subprocess
    import sys
    import time

    spec_file = tmp / ".spec.json"
    spec_file.write_text(json.dumps(spec.to_json()))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "pneumo_lib.data.phantom", str(tmp), str(k), str(workers)],
                              env=env, stderr=subprocess.PIPE)
             for k in range(workers)]
    try:
        while any(p.poll() is None for p in procs):
            if progress is not None:
                progress(sum(1 for _ in (tmp / "chest_xray").rglob("*.jpeg")), total)
            time.sleep(0.2)
        for k, p in enumerate(procs):
            if p.returncode != 0:
                err = p.stderr.read().decode(errors="replace").strip().splitlines()
                raise RuntimeError(f"Phantom worker {k} of {workers} failed (exit {p.returncode}): "
                                   f"{err[-1] if err else 'no message'}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            p.stderr.close()
    shards = [json.loads((tmp / f".rows-{k}.json").read_text()) for k in range(workers)]
    rows = [None] * total
    for k, part in enumerate(shards):
        rows[k::workers] = [tuple(r) if r is not None else None for r in part]
    for k in range(workers):
        (tmp / f".rows-{k}.json").unlink()
    spec_file.unlink()
    if progress is not None:
        progress(total, total)
    return rows


def _worker_main(argv: list[str]) -> int:
    """Entry point of a shard process: ``python -m pneumo_lib.data.phantom TMP SHARD SHARDS``."""
    tmp, shard, shards = Path(argv[0]), int(argv[1]), int(argv[2])
    spec = PhantomSpec.from_json(json.loads((tmp / ".spec.json").read_text()))
    rows = _write_shard(tmp, spec, shard, shards)
    (tmp / f".rows-{shard}.json").write_text(json.dumps(rows))
    return 0


def read_spec(root: str | os.PathLike) -> PhantomSpec | None:
    """The spec a phantom dataset at ``root`` was generated from, or None if there is none."""
    file = Path(root) / "phantom.json"
    if not file.is_file():
        return None
    try:
        return PhantomSpec.from_json(json.loads(file.read_text()))
    except (ValueError, KeyError, TypeError):  # an unreadable record: not one of ours
        return None


if __name__ == "__main__":
    import sys

    sys.exit(_worker_main(sys.argv[1:]))
