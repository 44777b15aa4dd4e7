"""How a study is taken: pose, exposure, detector, collimation, burnt-in text, ECG leads.

A :class:`Hospital` holds the ranges every study of one site draws from; :func:`sample_acquisition`
draws one study's :class:`Acquisition` from them. The two sites of the phantom:

* ``"A"`` (the default): the reference settings;
* ``"B"``: another site that differs *only* in the fields named by :data:`HOSPITAL_DIFFERENCES`:
  harder exposure (more penetrated, greyer films), more quantum noise, sloppier positioning
  (rotation, off-centre, zoom), other burnt-in markers (a serif font, bigger letters, more
  "PORTABLE"/"SUPINE" text, placed on the right), and an older age mix.

Every draw uses a fixed number of values from the random stream, mapped through the site's
ranges, so the same seeds give the same study at either site except for those differences.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from pneumo_lib.data.radiograph.anatomy import Pose


@dataclass(frozen=True)
class Positioning:
    """How carefully patients are positioned.

    Attributes:
        rotation: Largest in-plane rotation in degrees.
        shift: Largest off-centring in image units (the image height is 2).
        zoom: ``(lo, hi)`` patient size in the field.
        axial: Largest rotation about the body axis (mediastinal offset).
        arms_up: Share of studies with the arms raised.
    """

    rotation: float = 4.0
    shift: float = 0.05
    zoom: tuple[float, float] = (0.98, 1.1)
    axial: float = 0.03
    arms_up: float = 0.7


@dataclass(frozen=True)
class Markers:
    """Burnt-in text of a site.

    Attributes:
        fonts: Font files (DejaVu names, bundled with matplotlib) to choose from.
        size: ``(lo, hi)`` letter height as a fraction of the image height.
        extras: Texts that may appear besides the laterality letter.
        extra_rate: Chance of each study carrying one of ``extras``.
        date_rate: Chance of a date.
        right_side: Chance that the text block sits at the image's right rather than left.
    """

    fonts: tuple[str, ...] = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")
    size: tuple[float, float] = (0.045, 0.08)
    extras: tuple[str, ...] = ("A-P", "AP", "PORTABLE", "UPRIGHT")
    extra_rate: float = 0.35
    date_rate: float = 0.15
    right_side: float = 0.1


@dataclass(frozen=True)
class Hospital:
    """The acquisition ranges of one site (see the module docstring).

    Attributes:
        name: ``"A"`` or ``"B"``.
        exposure: ``(lo, hi)`` film gain ``k`` in ``1 - exp(-k * attenuation)``.
        noise: ``(lo, hi)`` quantum-noise standard deviation (gray fraction at mid-gray).
        positioning: See :class:`Positioning`.
        markers: See :class:`Markers`.
        age_mix: ``(youngest, most common, oldest)`` age in years (triangular distribution).
        window: ``(lo, hi)`` ranges of the display window's black and white points.
        gamma: ``(lo, hi)`` display gamma.
        blur: ``(lo, hi)`` detector blur, in pixels at 256 px image height.
        inspiration: ``(lo, hi)`` depth of inspiration.
        collimation_rate: Share of studies with visible collimator edges.
        ecg_rate: Share of studies with ECG electrodes and leads on the chest.
    """

    name: str = "A"
    exposure: tuple[float, float] = (1.6, 2.2)
    noise: tuple[float, float] = (0.005, 0.014)
    positioning: Positioning = field(default_factory=Positioning)
    markers: Markers = field(default_factory=Markers)
    age_mix: tuple[float, float, float] = (0.4, 2.5, 8.0)
    window: tuple[tuple[float, float], tuple[float, float]] = ((0.12, 0.24), (0.95, 1.02))
    gamma: tuple[float, float] = (0.8, 1.15)
    blur: tuple[float, float] = (0.5, 1.3)
    inspiration: tuple[float, float] = (0.86, 1.08)
    collimation_rate: float = 0.3
    ecg_rate: float = 0.06


#: The fields in which hospital ``B`` differs from ``A`` (and nothing else).
HOSPITAL_DIFFERENCES = ("exposure", "noise", "positioning", "markers", "age_mix")

#: The sites of the phantom, by name.
HOSPITALS: dict[str, Hospital] = {
    "A": Hospital(),
    "B": Hospital(
        name="B",
        exposure=(2.3, 3.0),
        noise=(0.014, 0.03),
        positioning=Positioning(rotation=9.0, shift=0.1, zoom=(0.9, 1.14), axial=0.06, arms_up=0.4),
        markers=Markers(fonts=("DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf"), size=(0.07, 0.11),
                        extras=("PORTABLE", "SUPINE", "ERECT"), extra_rate=0.7, date_rate=0.5, right_side=0.8),
        age_mix=(1.5, 5.0, 12.0),
    ),
}


def get_hospital(name: str | Hospital) -> Hospital:
    """The :class:`Hospital` called ``name`` (a :class:`Hospital` is returned as is)."""
    if isinstance(name, Hospital):
        return name
    if name not in HOSPITALS:
        raise ValueError(f"Unknown hospital {name!r}. Valid hospitals: {', '.join(HOSPITALS)}.")
    return HOSPITALS[name]


def sample_age(u: float, hospital: Hospital) -> float:
    """The age (years) at quantile ``u`` in [0, 1) of the site's triangular age mix."""
    lo, mode, hi = hospital.age_mix
    cut = (mode - lo) / (hi - lo)
    if u < cut:
        return float(lo + np.sqrt(u * (hi - lo) * (mode - lo)))
    return float(hi - np.sqrt((1 - u) * (hi - lo) * (hi - mode)))


@dataclass(frozen=True)
class Text:
    """One burnt-in text: string, font file, letter height (fraction of the image height),
    position (fractions of width and height: of its top-left corner, or of its top-right
    corner when ``x > 0.5``) and gray level (0-255)."""

    text: str
    font: str
    size: float
    x: float
    y: float
    gray: int


@dataclass(frozen=True)
class Acquisition:
    """One study's acquisition (drawn by :func:`sample_acquisition`).

    Attributes:
        pose: Patient position (:class:`~pneumo_lib.data.radiograph.anatomy.Pose`).
        exposure: Film gain ``k``.
        window: Display black and white points (of ``1 - exp(-k A)``).
        gamma: Display gamma.
        noise: Quantum-noise standard deviation at mid-gray (gray fraction).
        blur: Detector blur in pixels at 256 px height.
        collimation: ``(left, top, right, bottom)`` fractions cut by the collimator, or None.
        texts: Burnt-in texts.
        ecg: ECG electrodes as ``(x, y)`` fractions of width and height (empty: none).
        seed: Seed of the noise and of the leads' wiring.
    """

    pose: Pose
    exposure: float
    window: tuple[float, float]
    gamma: float
    noise: float
    blur: float
    collimation: tuple[float, float, float, float] | None
    texts: tuple[Text, ...]
    ecg: tuple[tuple[float, float], ...]
    seed: int


def _between(u: float, lohi: tuple[float, float]) -> float:
    return float(lohi[0] + u * (lohi[1] - lohi[0]))


def sample_acquisition(rng: np.random.Generator, hospital: Hospital, left_letter: bool = True) -> Acquisition:
    """One study's acquisition at ``hospital`` (a fixed number of draws from ``rng``).

    ``left_letter``: the laterality letter is the patient-level "R" at the image's left
    (else "L" at its right), as a site's radiographers place their lead letters.
    """
    u = rng.random(24)
    pos = hospital.positioning
    pose = Pose(rotation=pos.rotation * (2 * u[0] - 1),
                shift=(pos.shift * (2 * u[1] - 1), 0.6 * pos.shift * (2 * u[2] - 1)),
                zoom=_between(u[3], pos.zoom),
                inspiration=_between(u[4], hospital.inspiration),
                axial=pos.axial * (2 * u[5] - 1),
                tilt=0.04 * (2 * u[6] - 1),
                arms_up=bool(u[7] < pos.arms_up))
    window = (_between(u[8], hospital.window[0]), _between(u[9], hospital.window[1]))
    collimation = None
    if u[10] < hospital.collimation_rate:
        collimation = tuple(float(0.07 * v) for v in rng.random(4))
    else:
        rng.random(4)
    m = hospital.markers
    texts = []
    size = _between(u[11], m.size)
    right = u[12] < m.right_side
    font_at = lambda v: m.fonts[min(int(v * len(m.fonts)), len(m.fonts) - 1)]  # noqa: E731
    letter_x = 0.03 + 0.06 * u[13] if left_letter else 0.97 - 0.06 * u[13]
    texts.append(Text("R" if left_letter else "L", font_at(u[14]), size * 1.3, letter_x, 0.03 + 0.1 * u[15], 240))
    block_x = 0.97 if right else 0.03
    line = 0.16 + 0.05 * u[16]
    if u[17] < m.extra_rate:
        extra = m.extras[min(int(u[18] * len(m.extras)), len(m.extras) - 1)]
        texts.append(Text(extra, font_at(u[14]), size * 0.8, block_x, line, 225))
        line += size * 1.1
    if u[19] < m.date_rate:
        day, month, year = int(1 + 27 * u[20]), int(1 + 11.99 * u[21]), 2010 + int(8 * u[22])
        texts.append(Text(f"{month:02d}/{day:02d}/{year}", font_at(u[14]), size * 0.55, block_x, line, 215))
    ecg = ()
    leads = rng.random(9)
    if u[23] < hospital.ecg_rate:
        n = 2 + int(leads[0] * 3)
        ecg = tuple((0.18 + 0.64 * leads[1 + 2 * k], 0.25 + 0.55 * leads[2 + 2 * k]) for k in range(n))
    return Acquisition(pose=pose, exposure=_between(rng.random(), hospital.exposure), window=window,
                       gamma=_between(rng.random(), hospital.gamma), noise=_between(rng.random(), hospital.noise),
                       blur=_between(rng.random(), hospital.blur), collimation=collimation,
                       texts=tuple(texts), ecg=ecg, seed=int(rng.integers(2**31)))


def expose(attenuation: np.ndarray, acq: Acquisition) -> np.ndarray:
    """Film response: ``((1 - exp(-k A)) - black) / (white - black)``, clipped, to the power gamma.

    Args:
        attenuation: float ``(H, W)`` >= 0 (see :class:`~pneumo_lib.data.radiograph.anatomy.Thorax`).

    Returns:
        float32 ``(H, W)`` in [0, 1]: 0 where nothing attenuates (black), bright where bone is.
    """
    lo, hi = acq.window
    film = 1.0 - np.exp(-acq.exposure * attenuation)
    return (np.clip((film - lo) / (hi - lo), 0, 1) ** acq.gamma).astype(np.float32)


def draw_leads(image: np.ndarray, acq: Acquisition) -> np.ndarray:
    """ECG electrodes (bright rings with a snap) and their leads, on a float ``(H, W)`` image in [0, 1]."""
    if not acq.ecg:
        return image
    h, w = image.shape
    rng = np.random.default_rng([acq.seed, 5])
    layer = Image.new("F", (w, h), 0.0)
    draw = ImageDraw.Draw(layer)
    r = max(3, int(0.028 * h))
    for fx, fy in acq.ecg:
        cx, cy = fx * w, fy * h
        ex, ey = (0.0 if fx < 0.5 else w - 1.0), rng.uniform(0.3, 1.0) * h
        mx, my = (cx + ex) / 2 + rng.uniform(-0.1, 0.1) * w, (cy + ey) / 2 + rng.uniform(-0.1, 0.1) * h
        t = np.linspace(0, 1, 20)[:, None]
        curve = (1 - t) ** 2 * [cx, cy] + 2 * (1 - t) * t * [mx, my] + t**2 * [ex, ey]
        draw.line([tuple(p) for p in curve.tolist()], fill=0.55, width=max(1, h // 220))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=0.7, width=max(1, r // 3))
        draw.ellipse((cx - r / 3, cy - r / 3, cx + r / 3, cy + r / 3), fill=0.95)
    return np.maximum(image, np.asarray(layer))


def detector_blur(image: np.ndarray, acq: Acquisition, height: int) -> np.ndarray:
    """The detector's blur on a float ``(h, w)`` image that will be shown ``height`` px high.

    The blur is ``acq.blur`` pixels at 256 px, scaled to ``height`` and to this grid.
    """
    sigma = acq.blur * image.shape[0] / 256
    return ndimage.gaussian_filter(image, sigma) if sigma > 0.25 else image


def add_noise(image: np.ndarray, acq: Acquisition, noise: np.ndarray) -> np.ndarray:
    """Quantum noise on a float ``(H, W)`` image in [0, 1] (float32, not clipped).

    ``noise`` is a standard-normal field of the same shape (drawn once per study, so a
    study and its lesion-free twin share it); its amplitude grows with brightness (fewer
    photons get through dense parts).
    """
    return (image + acq.noise * (0.5 + image) * noise).astype(np.float32)


def noise_field(shape: tuple[int, int], acq: Acquisition) -> np.ndarray:
    """The study's standard-normal noise field, float32 ``shape``."""
    return np.random.default_rng([acq.seed, 4]).standard_normal(shape, dtype=np.float32)


def collimate(image: np.ndarray, acq: Acquisition) -> np.ndarray:
    """Darken what lies outside the collimator's rectangle (float ``(H, W)`` image)."""
    if acq.collimation is None:
        return image
    h, w = image.shape
    left, top, right, bottom = acq.collimation
    out = image.copy()
    out[:, : int(left * w)] *= 0.08
    out[:, w - int(right * w):] *= 0.08
    out[: int(top * h)] *= 0.08
    out[h - int(bottom * h):] *= 0.08
    return out


@functools.lru_cache(maxsize=64)
def _font(name: str, pixels: int) -> ImageFont.ImageFont:
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.origin is not None:
        file = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / name
        if file.is_file():
            return ImageFont.truetype(str(file), pixels)
    return ImageFont.load_default(size=pixels)


def burn_in(pil: Image.Image, acq: Acquisition) -> Image.Image:
    """Draw the study's burnt-in texts onto an 8-bit grayscale PIL image (in place; returned)."""
    draw = ImageDraw.Draw(pil)
    w, h = pil.size
    for t in acq.texts:
        pixels = max(7, int(round(t.size * h)))
        draw.text((int(t.x * w), int(t.y * h)), t.text, fill=t.gray, font=_font(t.font, pixels),
                  anchor="ra" if t.x > 0.5 else "la")
    return pil
