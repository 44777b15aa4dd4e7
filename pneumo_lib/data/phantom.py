"""Phantom chest radiographs: a generated dataset in the Kaggle layout, with lesion masks.

The generator draws simplified paediatric AP chest X-rays (body outline, lung fields,
heart and mediastinum, spine, ribs, clavicles, diaphragm domes, exposure, blur and
noise, a burnt-in laterality letter) and, for PNEUMONIA, opacities inside the lung
fields: one focal lobar consolidation for ``bacteria`` images, several diffuse
bilateral patches for ``virus`` images. Every lesion pixel is recorded in a mask.

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

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from pneumo_lib.data.layout import CLASSES, SPLITS
from pneumo_lib.data.staging import replace_atomically

#: Images per split and class, ``{split: (NORMAL, PNEUMONIA)}``, for each scale preset.
#: ``full`` is the Kaggle dataset's exact counts (5,856 images); ``quick`` keeps
#: Kaggle's class ratios at about a third of the size so that the book trains in seconds.
PHANTOM_COUNTS: dict[str, dict[str, tuple[int, int]]] = {
    "quick": {"train": (380, 1100), "val": (8, 8), "test": (117, 195)},
    "full": {"train": (1341, 3875), "val": (8, 8), "test": (234, 390)},
    "tiny": {"train": (12, 24), "val": (2, 2), "test": (6, 10)},
}

#: Default nominal image height in pixels (widths and heights vary around it).
DEFAULT_SIZE = 256

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

_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
_VERSION = 7  # bump when the drawing changes: existing datasets are regenerated
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

    def to_json(self) -> dict:
        out = {
            "version": self.version,
            "seed": self.seed,
            "counts": {k: list(v) for k, v in self.counts.items()},
            "size": self.size,
            "shortcut": self.shortcut,
            "shortcut_test": self.shortcut_test,
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
        )


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


def _soft(d: np.ndarray, width: float) -> np.ndarray:
    """Soft inside-indicator of a signed distance ``d`` (>0 inside), in [0, 1]."""
    return 1.0 / (1.0 + np.exp(-np.clip(d / width, -30, 30)))


def _anatomy(rng: np.random.Generator) -> dict:
    """Patient-specific anatomy parameters (normalised coordinates, x and y in [-1, 1])."""
    return {
        "body_w": rng.uniform(0.78, 0.92),
        "lung_cx": rng.uniform(0.34, 0.42),
        "lung_cy": rng.uniform(-0.08, 0.02),
        "lung_w": rng.uniform(0.22, 0.28),
        "lung_h": rng.uniform(0.5, 0.6),
        "heart_w": rng.uniform(0.24, 0.32),
        "heart_h": rng.uniform(0.2, 0.26),
        "rib_gap": rng.uniform(0.11, 0.14),
        "exposure": rng.uniform(0.85, 1.15),
        "aspect": rng.uniform(1.0, 1.35),
    }


def _lungs(x: np.ndarray, y: np.ndarray, a: dict) -> tuple[np.ndarray, np.ndarray]:
    """Soft masks of the image-left (patient right) and image-right lung fields."""
    out = []
    for side in (-1, 1):
        cx = side * a["lung_cx"]
        w = a["lung_w"] * (0.92 if side == 1 else 1.0)
        dx = (x - cx) / w
        dy = (y - a["lung_cy"]) / a["lung_h"]
        # Narrow apex at the top, wide base, a diaphragm dome cutting the bottom.
        dx = dx / (0.75 + 0.25 * np.clip(dy + 1, 0, 2))
        inside = 1 - np.sqrt(dx**2 + dy**2)
        dome = (a["lung_cy"] + a["lung_h"] * 0.8 - 0.12 * ((x - cx) / w) ** 2) - y
        out.append(_soft(np.minimum(inside, dome * 3), 0.04))
    return out[0], out[1]


def _blob(x, y, cx, cy, r, rng, lobes=5) -> np.ndarray:
    """A soft irregular blob (values in [0, 1]) of radius about ``r``."""
    ang = np.arctan2(y - cy, x - cx)
    radius = np.full_like(ang, r)
    for k in range(2, 2 + lobes):
        radius = radius + r * rng.uniform(0, 0.18) * np.cos(k * ang + rng.uniform(0, 2 * np.pi))
    d = 1 - np.hypot(x - cx, (y - cy) * rng.uniform(0.8, 1.2)) / radius
    return _soft(d, 0.12)


def _point_in(mask: np.ndarray, rng: np.random.Generator, x, y, margin: float) -> tuple[float, float]:
    """A random point well inside a soft mask (normalised coordinates)."""
    ys, xs = np.nonzero(mask > margin)
    i = int(rng.integers(len(ys)))
    return float(x[0, xs[i]]), float(y[ys[i], 0])


#: Lesion appearance: (radius range, opacity range) in normalised units / intensity.
LESIONS = {
    "bacteria": {"radius": (0.18, 0.26), "opacity": (0.36, 0.48), "per_lung": (1, 1)},
    "virus": {"radius": (0.12, 0.17), "opacity": (0.3, 0.4), "per_lung": (1, 2)},
}


def _lesions(x, y, lungs, kind, rng) -> tuple[np.ndarray, np.ndarray]:
    """Opacity to add (in [0, 0.4]) and the boolean lesion mask.

    ``bacteria``: one focal consolidation in one lung; ``virus``: patches in both
    lungs. Opacities are mottled (alveolar filling is patchy) and stay inside the
    lung fields; the mask is where a lesion's shape exceeds half its strength.
    """
    spec = LESIONS[kind]
    sides = [int(rng.integers(2))] if kind == "bacteria" else [0, 1]
    opacity = np.zeros_like(x)
    shape = np.zeros_like(x)
    for side in sides:
        lo, hi = spec["per_lung"]
        for _ in range(int(rng.integers(lo, hi + 1))):
            cx, cy = _point_in(lungs[side], rng, x, y, 0.99)
            blob = _blob(x, y, cx, cy, rng.uniform(*spec["radius"]), rng)
            fx, fy, px, py = rng.uniform(14, 22), rng.uniform(14, 22), *rng.uniform(0, 2 * np.pi, 2)
            mottle = 0.85 + 0.15 * np.cos(fx * x + px) * np.cos(fy * y + py)
            opacity = np.maximum(opacity, rng.uniform(*spec["opacity"]) * blob * mottle)
            shape = np.maximum(shape, blob)
    lung_any = np.maximum(*lungs)
    return opacity * lung_any, (shape > 0.5) & (lung_any > 0.5)


def _render(rng: np.random.Generator, a: dict, h: int, w: int, kind: str,
            lesion_rng: np.random.Generator, lesion_scale: float = 1.0):
    """One radiograph (float in [0, 1], shape (h, w)) and its lesion mask (bool).

    Lesions draw from their own stream, so rendering the same study with
    ``kind="normal"`` gives its exact lesion-free twin. ``lesion_scale`` multiplies
    the lesions' opacity (the mask does not change).
    """
    # Small per-study jitter of the patient's anatomy: position and exposure.
    sx, sy = rng.uniform(-0.04, 0.04, size=2)
    x = np.linspace(-a["aspect"], a["aspect"], w)[None, :] - sx
    y = np.linspace(-1, 1, h)[:, None] - sy
    x, y = np.broadcast_to(x, (h, w)), np.broadcast_to(y, (h, w))

    body = _soft(1 - ((np.abs(x) / a["body_w"]) ** 4 + (np.abs(y - 0.15) / 1.1) ** 4), 0.05)
    img = 0.06 + 0.42 * body
    lungs = _lungs(x, y, a)
    lung_any = np.maximum(*lungs)
    img -= 0.30 * lung_any
    # Spine and mediastinum down the middle, vertebrae as faint bands.
    spine = _soft(0.09 - np.abs(x), 0.015) * _soft(1.05 - np.abs(y), 0.02)
    img += spine * (0.22 + 0.04 * np.cos(y * 28))
    # Heart: bulges into the image-right (patient's left) lung.
    heart = _soft(1 - np.hypot((x - 0.12) / a["heart_w"], (y - 0.22) / a["heart_h"]), 0.08)
    img += 0.2 * heart
    # Ribs: curved bands across each lung, plus clavicles.
    ribs = np.zeros_like(x)
    for side in (-1, 1):
        u = side * x
        for k in range(9):
            y0 = -0.62 + k * a["rib_gap"]
            centre = y0 + 0.5 * (u - 0.2) ** 2 + 0.08 * u
            ribs = np.maximum(ribs, _soft(0.018 - np.abs(y - centre), 0.006) * (u > 0.06))
        clav = -0.7 + 0.12 * (u - 0.1) - 0.05 * (u - 0.1) ** 2
        ribs = np.maximum(ribs, 1.6 * _soft(0.022 - np.abs(y - clav), 0.006) * (u > 0.08) * (u < 0.7))
    img += 0.07 * ribs * body
    opacity, mask = (np.zeros_like(x), np.zeros(x.shape, bool))
    if kind != "normal":
        opacity, mask = _lesions(x, y, lungs, kind, lesion_rng)
        if lesion_scale != 1.0:
            opacity = opacity * lesion_scale
    img += opacity
    # Exposure: gamma and gain vary per study.
    img = np.clip(img, 0, 1) ** rng.uniform(0.85, 1.2) * a["exposure"] * rng.uniform(0.95, 1.05)
    return np.clip(img, 0, 1), mask


def _finish(img: np.ndarray, rng: np.random.Generator, left_marker: bool) -> Image.Image:
    """Blur, noise, the burnt-in laterality letter; returns an 8-bit grayscale image."""
    h, w = img.shape
    pil = Image.fromarray((img * 255).astype(np.uint8), mode="L")
    pil = pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.4)))
    arr = np.asarray(pil, np.float32) + rng.normal(0, rng.uniform(2, 7), size=(h, w))
    pil = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    draw = ImageDraw.Draw(pil)
    font = ImageFont.load_default(size=max(8, h // 14))
    tx = int(w * 0.05) if left_marker else int(w * 0.88)
    draw.text((tx, int(h * 0.04)), "R" if left_marker else "L", fill=235, font=font)
    return pil


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
               size: int = DEFAULT_SIZE, *, lesion_scale: float = 1.0) -> tuple[Image.Image, np.ndarray]:
    """Render one phantom radiograph without writing it.

    Args:
        seed: Root seed of the dataset.
        split: ``"train"``, ``"val"`` or ``"test"`` (part of the random stream).
        label: 0 (NORMAL) or 1 (PNEUMONIA).
        patient: Patient number: images of one patient share their anatomy.
        index: Image number within the patient.
        kind: ``"normal"``, ``"bacteria"`` or ``"virus"``. A PNEUMONIA study
            rendered with ``kind="normal"`` is its lesion-free twin (same pixels
            everywhere but where the lesions were).
        size: Nominal image height in pixels.
        lesion_scale: Multiplies the lesions' opacity (1: as in the plain dataset;
            :attr:`PhantomSettings.lesion_scale` in the marked splits of the shortcut variant).
            The mask does not depend on it.

    Returns:
        ``(image, mask)``: an 8-bit grayscale PIL image of about ``size`` x
        ``1.0-1.35 * size`` pixels, and a boolean lesion mask of the same shape
        (all False for NORMAL).
    """
    patient_rng = np.random.default_rng([seed, label, patient])
    anatomy = _anatomy(patient_rng)
    # Sizes vary per patient but not per class: on Kaggle PNEUMONIA images are smaller,
    # a shortcut the phantom leaves out so that the lesions are the signal.
    base = size * patient_rng.uniform(0.9, 1.12)
    h = int(round(base))
    w = int(round(base * anatomy["aspect"] * 0.9))
    rng = np.random.default_rng([seed, _SPLIT_CODE[split], label, patient, index, 1])
    lesion_rng = np.random.default_rng([seed, _SPLIT_CODE[split], label, patient, index, 3])
    # Anatomy is smooth: draw it at half resolution and upsample (4x faster).
    small, small_mask = _render(rng, anatomy, (h + 1) // 2, (w + 1) // 2, kind, lesion_rng, lesion_scale)
    img = np.asarray(Image.fromarray(small.astype(np.float32), mode="F").resize((w, h), Image.BICUBIC))
    mask = np.asarray(Image.fromarray(small_mask.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR)) > 0.5
    pil = _finish(img, rng, left_marker=patient_rng.random() < 0.8)
    return pil, mask


def phantom_spec(scale: str = "quick", seed: int = 42, *, size: int = DEFAULT_SIZE,
                 shortcut: bool = False, shortcut_test: bool = False,
                 settings: PhantomSettings | None = None) -> PhantomSpec:
    """The :class:`PhantomSpec` of a scale preset (``"quick"``, ``"full"`` or ``"tiny"``).

    ``settings`` (default :data:`DEFAULT_SETTINGS`) says how a shortcut variant is drawn;
    it is ignored (and not recorded) when ``shortcut`` is False.
    """
    if scale not in PHANTOM_COUNTS:
        raise ValueError(f"Unknown phantom scale {scale!r}. Valid scales: {', '.join(PHANTOM_COUNTS)}.")
    if settings is not None and not isinstance(settings, PhantomSettings):
        raise TypeError(f"settings must be a phantom.PhantomSettings, got {type(settings).__name__}.")
    params = (settings or DEFAULT_SETTINGS).as_params()
    return PhantomSpec(seed, dict(PHANTOM_COUNTS[scale]), size, shortcut, shortcut_test,
                       shortcut_version=SHORTCUT_VERSION if shortcut else 0,
                       shortcut_params=params if shortcut else {})


def is_marked_split(spec: PhantomSpec, split: str) -> bool:
    """Whether images of ``split`` are drawn the shortcut way (marker, fainter lesions)."""
    return spec.shortcut and (split != "test" or spec.shortcut_test)


def generate_phantom(root: str | os.PathLike, spec: PhantomSpec, *, force: bool = False,
                     progress: Callable[[int, int], None] | None = None) -> Path:
    """Generate a phantom dataset into ``root`` (see the module docstring for the layout).

    The dataset is written to a temporary sibling folder and renamed into place
    only when complete, so an interrupted run never leaves a dataset that looks whole.

    Args:
        root: Folder to create; it will hold ``chest_xray/``, ``masks/``,
            ``markers.csv`` and ``phantom.json``.
        spec: What to generate (see :func:`phantom_spec`).
        force: Replace an existing phantom dataset at ``root``.
        progress: Optional callback ``progress(done, total)``.

    Returns:
        The ``chest_xray`` folder (Kaggle layout).

    Raises:
        FileExistsError: ``root`` exists and ``force`` is False.
    """
    root = Path(root)
    if root.exists() and not force:
        raise FileExistsError(f"{root} already exists; pass force=True (or --force) to replace it.")
    if spec.size < 32:
        raise ValueError(f"Phantom image size must be at least 32 px, got {spec.size}.")
    with replace_atomically(root) as tmp:
        _write_all(tmp, spec, progress)
    return root / "chest_xray"


def _write_all(tmp: Path, spec: PhantomSpec, progress) -> None:
    plan = _plan(spec)
    markers = []
    for split in SPLITS:
        for cls in CLASSES:
            (tmp / "chest_xray" / split / cls).mkdir(parents=True, exist_ok=True)
    for n, item in enumerate(plan):
        marked = is_marked_split(spec, item.split)
        pil, mask = render_one(spec.seed, item.split, item.label, item.patient, item.index,
                               item.kind, spec.size,
                               lesion_scale=spec.shortcut_params["lesion_scale"] if marked else 1.0)
        rel = f"{item.split}/{CLASSES[item.label]}/{item.stem}.jpeg"
        if marked:
            mrng = np.random.default_rng([spec.seed, _SPLIT_CODE[item.split], item.label,
                                          item.patient, item.index, 2])
            rate = spec.shortcut_params["rate" if item.label == 1 else "normal_rate"]
            if mrng.random() < rate:
                markers.append((rel, *_draw_marker(pil, mrng, spec.shortcut_params["marker_side"])))
        pil.save(tmp / "chest_xray" / rel, format="JPEG", quality=92)
        if item.label == 1:
            mask_file = tmp / "masks" / item.split / "PNEUMONIA" / f"{item.stem}.png"
            mask_file.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(mask_file, format="PNG")
        if progress is not None:
            progress(n + 1, len(plan))
    with open(tmp / "markers.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "x0", "y0", "x1", "y1"])
        writer.writerows(markers)
    (tmp / "phantom.json").write_text(json.dumps(spec.to_json(), indent=1))


def read_spec(root: str | os.PathLike) -> PhantomSpec | None:
    """The spec a phantom dataset at ``root`` was generated from, or None if there is none."""
    file = Path(root) / "phantom.json"
    if not file.is_file():
        return None
    return PhantomSpec.from_json(json.loads(file.read_text()))
