"""Pneumonia as attenuation added to the lungs, and its mask.

* ``bacteria``: a lobar or segmental consolidation: the air of one region of one lung
  replaced by fluid (dense, homogeneous, bounded by a fissure where it reaches one), the
  larger bronchi left aerated inside it (air bronchograms); where it touches the heart or a
  hemidiaphragm that border disappears (the silhouette sign), because both are then the
  same density. Its mask is one connected region in one lung.
* ``virus``: bilateral, perihilar, patchy interstitial opacities (a reticular texture) with
  peribronchial thickening; its mask touches both lungs.

The added attenuation is exactly zero outside the mask, so a study and its lesion-free twin
differ only there. How dense and how large a lesion is follows its *severity* in [0, 1],
drawn from :data:`SEVERITY` (subtle to obvious): the one knob that sets how hard the
phantom is to classify.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pneumo_lib.data.radiograph.anatomy import SIDES, Thorax

#: The study kinds: ``normal`` (no lesion), ``bacteria`` and ``virus`` (PNEUMONIA).
KINDS = ("normal", "bacteria", "virus")

#: Severity distribution: ``Beta(a, b)`` rescaled to ``[lo, hi]`` (mean about 0.59). Tuned so
#: that on the quick profile the paper's CNN reaches a test ROC AUC of 0.912 to 0.932 over the
#: profile seeds 42, 1, 2, 3 and 4, and project B's CNN 0.970 to 0.9897 (``benchmarks/phantom_difficulty.py``,
#: on one 2-core AVX-512 machine; other CPUs train to slightly different weights). With
#: ``Beta(2.5, 1)`` on ``[0.1, 1]`` project B's CNN scored 0.99 within six epochs; fainter
#: lesions (bacterial density ``0.55 + 1.1 s``, or viral opacity ``0.36 + 1.45 s``) put the paper's
#: CNN below 0.90 on seed 1 (0.891, 0.897).
SEVERITY = {"a": 2.0, "b": 1.5, "lo": 0.05, "hi": 1.0}

#: Lobes by lung, with how often a consolidation sits there.
LOBES = {"right": {"upper": 0.35, "middle": 0.25, "lower": 0.4},
         "left": {"upper": 0.3, "lingula": 0.25, "lower": 0.45}}


def sample_severity(rng: np.random.Generator, severity: dict | None = None) -> float:
    """A severity in ``[lo, hi]`` of :data:`SEVERITY` (or the given parameters)."""
    s = SEVERITY if severity is None else severity
    return float(s["lo"] + (s["hi"] - s["lo"]) * rng.beta(s["a"], s["b"]))


def _lobe(thorax: Thorax, side: str, lobe: str) -> np.ndarray:
    """Boolean ``(h, w)``: the part of a lung's projection that a lobe occupies (fissures sharp)."""
    s = SIDES[side]
    u = s * (thorax.X - thorax.mediastinum_x)
    Y, f = thorax.Y, thorax.fissure
    # Only the right horizontal fissure is seen edge-on on a frontal film: it bounds upper and
    # middle lobe consolidations sharply. Elsewhere lobes overlap in projection, so the lobe
    # decides where the consolidation is centred (see ``_CENTRES``) and the lung bounds it.
    if side == "right" and lobe == "upper":
        return Y < f
    if side == "right" and lobe == "middle":
        return Y >= f
    return np.ones(Y.shape, bool)


#: Where in the lung (``u`` outwards from the mediastinum, ``Y`` down) each lobe's
#: consolidations are centred: ``(u_lo, u_hi, y_lo, y_hi)``.
_CENTRES = {("right", "upper"): (0.15, 0.6, -0.65, -0.2), ("right", "middle"): (0.12, 0.4, -0.05, 0.3),
            ("right", "lower"): (0.25, 0.65, 0.05, 0.45), ("left", "upper"): (0.2, 0.6, -0.65, -0.15),
            ("left", "lingula"): (0.3, 0.55, -0.1, 0.25), ("left", "lower"): (0.3, 0.65, 0.05, 0.45)}


def _smooth_noise(shape, rng, sigma: float) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return n / max(float(n.std()), 1e-6)


def _blob(thorax: Thorax, cx: float, cy: float, r: float, rng) -> np.ndarray:
    """Soft irregular blob: 1 at the centre, 0 from its irregular radius ~``r`` outwards."""
    dx, dy = thorax.X - cx, (thorax.Y - cy) / rng.uniform(0.75, 1.3)
    ang = np.arctan2(dy, dx)
    radius = np.full(ang.shape, r, np.float32)
    for k in range(2, 6):
        radius += r * rng.uniform(0, 0.16) * np.cos(k * ang + rng.uniform(0, 2 * np.pi))
    return np.clip((1 - np.hypot(dx, dy) / radius) / 0.2, 0, 1) ** 0.7


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    return labels == (1 + int(np.argmax(sizes)))


def bacterial(thorax: Thorax, rng: np.random.Generator, severity: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """A consolidation in one lobe of one lung.

    Returns:
        ``(added, mask, info)``: float32 ``(h, w)`` attenuation to add (>= 0, zero outside
        the mask), the boolean mask (one connected region inside one lung field) and
        ``{"side", "lobe", "severity"}``.
    """
    side = "right" if rng.random() < 0.55 else "left"
    lobes = LOBES[side]
    lobe = list(lobes)[int(rng.choice(len(lobes), p=list(lobes.values())))]
    region = thorax.lung_region[side]
    allowed = _lobe(thorax, side, lobe) & (region > 0)
    u = SIDES[side] * (thorax.X - thorax.mediastinum_x)
    u_lo, u_hi, y_lo, y_hi = _CENTRES[side, lobe]
    near = (u >= u_lo) & (u <= u_hi) & (thorax.Y >= y_lo) & (thorax.Y <= y_hi)
    candidates = np.flatnonzero(allowed & near & (region > 0.6))
    if len(candidates) == 0:
        candidates = np.flatnonzero(allowed & (region > 0.6))
    if len(candidates) == 0:
        candidates = np.flatnonzero(allowed)
    pick = int(candidates[int(rng.integers(len(candidates)))])
    cy, cx = np.unravel_index(pick, region.shape)
    lobar = rng.random() < 0.6
    r = (rng.uniform(0.26, 0.4) if lobar else rng.uniform(0.14, 0.24)) * (0.55 + 0.45 * severity)
    fill = _blob(thorax, float(thorax.X[cy, cx]), float(thorax.Y[cy, cx]), r, rng) * allowed
    mask = _largest_component(fill > 0)
    texture = 0.85 + 0.15 * np.clip(_smooth_noise(fill.shape, rng, 2.0), -2, 2) / 2
    density = 0.6 + 1.2 * severity  # above 1: denser than the aerated lung's tissue alone (exudate)
    aerated = 1 - 0.75 * thorax.bronchi * np.clip((density - 0.45) / 0.3, 0, 1)
    added = density * np.where(mask, fill, 0) * texture * aerated * thorax.lung_air[side]
    return added.astype(np.float32), mask, {"side": side, "lobe": lobe, "severity": severity}


def viral(thorax: Thorax, rng: np.random.Generator, severity: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """Bilateral perihilar patchy interstitial opacities with peribronchial thickening.

    Returns:
        ``(added, mask, info)`` as :func:`bacterial`; the mask has a part in each lung.
    """
    shape = thorax.X.shape
    texture = np.abs(_smooth_noise(shape, rng, 1.0))  # reticular: ridges of band-limited noise
    patches = np.clip(0.55 + 0.35 * _smooth_noise(shape, rng, 5.0), 0, 1)
    added = np.zeros(shape, np.float32)
    mask = np.zeros(shape, bool)
    spread = 0.6 + 0.4 * severity
    for side, s in SIDES.items():
        hx, hy = thorax.hila[side]
        cx = hx + s * 0.08
        su, sy = spread * rng.uniform(0.22, 0.32), spread * rng.uniform(0.26, 0.38)
        envelope = np.exp(-(((thorax.X - cx) / su) ** 2 + ((thorax.Y - hy - 0.04) / sy) ** 2))
        part = np.clip((envelope - 0.3) / 0.4, 0, 1) * (thorax.lung_region[side] > 0)
        mask |= part > 0
        air = thorax.lung_air[side]
        added += (0.4 + 1.6 * severity) * part * air * (0.5 + 0.5 * patches) * (0.6 + 0.4 * np.clip(texture, 0, 2))
        added += (0.3 + 0.8 * severity) * part * thorax.vessels
    return added.astype(np.float32), mask, {"side": "both", "lobe": "perihilar", "severity": severity}


def lesion(thorax: Thorax, kind: str, rng: np.random.Generator,
           severity: dict | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """The lesion of a study of ``kind`` (one of :data:`KINDS`); ``normal`` has none.

    Returns:
        ``(added, mask, info)``: float32 ``(h, w)`` attenuation (zeros for ``normal``), a
        boolean mask, and a dict describing the lesion (empty for ``normal``).
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown study kind {kind!r}. Valid kinds: {', '.join(KINDS)}.")
    if kind == "normal":
        return np.zeros(thorax.X.shape, np.float32), np.zeros(thorax.X.shape, bool), {}
    sev = sample_severity(rng, severity)
    return (bacterial if kind == "bacteria" else viral)(thorax, rng, sev)
