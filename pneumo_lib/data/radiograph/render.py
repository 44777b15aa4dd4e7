"""One study from its seeds: :func:`render_study` -> image, lesion mask, label maps.

Random streams (each a NumPy generator seeded from a tuple, so nothing depends on order):

* patient ``(seed, label, patient)``: age quantile, anatomy, image size and aspect, the
  side of the laterality letter: every study of a patient shares them;
* study ``(seed, split, label, patient, index, 1)``: the acquisition (pose, exposure, ...);
* gas ``(..., 6)``: bowel gas and the stomach bubble;
* lesion ``(..., 3)``: severity, place, shape and texture of the lesion.

A PNEUMONIA study rendered with ``kind="normal"`` is therefore its lesion-free twin: the
same film, pixel for pixel, outside the lesion mask (the two are composited with the mask,
so blur and noise cannot spill a lesion's edge outside it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

from pneumo_lib.data.radiograph import acquisition as acq_mod
from pneumo_lib.data.radiograph.anatomy import build_thorax, sample_anatomy
from pneumo_lib.data.radiograph.pathology import KINDS, lesion

#: Each split's number in the random streams of a study (with the seed, label, patient and index).
SPLIT_CODE = {"train": 0, "val": 1, "test": 2}

#: Smallest and largest image side the renderer accepts, in pixels.
MIN_SIZE, MAX_SIZE = 32, 4096

#: Height of the grid the anatomy is computed on (it is smooth; finer detail comes from the
#: detector): at most this many rows, or a third of the image height if that is more.
INTERNAL_HEIGHT = 128


@dataclass
class Study:
    """A rendered study.

    Attributes:
        image: 8-bit grayscale PIL image (``mode "L"``), ``H x W``.
        mask: Boolean ``(H, W)`` lesion mask (all False for ``normal``).
        labels: ``{name: bool (H, W)}`` anatomy label maps (``body``, ``lung_right``,
            ``lung_left``, ``heart``, ``spine``, ``below_diaphragm_right``,
            ``below_diaphragm_left``), or None unless asked for.
        info: What was drawn: ``age``, ``hospital``, ``kind``, ``severity``, ``side``,
            ``lobe``, ``size`` ``(H, W)``, ``domes`` and ``heart_border`` (patient frame).
    """

    image: Image.Image
    mask: np.ndarray
    labels: dict | None = None
    info: dict = field(default_factory=dict)


def study_shape(rng_values: tuple[float, float], size: int, spread: float) -> tuple[int, int]:
    """``(H, W)`` of a study from two uniforms: height ``size * exp(+-spread)``, aspect 1.0-1.45."""
    h = size * float(np.exp(spread * (2 * rng_values[0] - 1)))
    w = h * (1.0 + 0.45 * rng_values[1])
    return max(MIN_SIZE, int(round(h))), max(MIN_SIZE, int(round(w)))


def _resize(a: np.ndarray, w: int, h: int, resample=Image.BICUBIC) -> np.ndarray:
    return np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize((w, h), resample))


def render_study(seed: int, split: str, label: int, patient: int, index: int, kind: str,
                 size: int = 256, *, hospital: str | acq_mod.Hospital = "A", lesion_scale: float = 1.0,
                 size_spread: float = 0.12, size_factor: float = 1.0, severity: dict | None = None,
                 with_labels: bool = False) -> Study:
    """Render one study (see the module docstring for what each seed decides).

    Args:
        seed: Root seed of the dataset.
        split: ``"train"``, ``"val"`` or ``"test"``.
        label: 0 (NORMAL) or 1 (PNEUMONIA).
        patient: Patient number (studies of a patient share their anatomy).
        index: Study number within the patient.
        kind: ``"normal"``, ``"bacteria"`` or ``"virus"``.
        size: Nominal image height in pixels; heights vary by ``exp(+-size_spread)`` per
            patient, widths are 1.0 to 1.45 times the height.
        hospital: A name in :data:`~pneumo_lib.data.radiograph.acquisition.HOSPITALS` or a
            :class:`~pneumo_lib.data.radiograph.acquisition.Hospital`.
        lesion_scale: Multiplies the lesion's attenuation (the mask does not change).
        size_factor: Multiplies the image size (the class-size confounder uses it).
        severity: Severity distribution (default
            :data:`~pneumo_lib.data.radiograph.pathology.SEVERITY`).
        with_labels: Also return the anatomy label maps.

    Returns:
        A :class:`Study`.

    Raises:
        ValueError: Unknown split, label, kind or hospital, or a size outside
            ``[MIN_SIZE, MAX_SIZE]``.
    """
    if split not in SPLIT_CODE:
        raise ValueError(f"Unknown split {split!r}. Valid splits: {', '.join(SPLIT_CODE)}.")
    if label not in (0, 1):
        raise ValueError(f"label must be 0 (NORMAL) or 1 (PNEUMONIA), got {label!r}.")
    if kind not in KINDS:
        raise ValueError(f"Unknown study kind {kind!r}. Valid kinds: {', '.join(KINDS)}.")
    if not MIN_SIZE <= size * size_factor <= MAX_SIZE:
        raise ValueError(f"Image size must be between {MIN_SIZE} and {MAX_SIZE} px, got {size * size_factor:g}.")
    site = acq_mod.get_hospital(hospital)
    patient_rng = np.random.default_rng([seed, label, patient])
    age = acq_mod.sample_age(float(patient_rng.random()), site)
    anatomy = sample_anatomy(patient_rng, age)
    h, w = study_shape(tuple(patient_rng.random(2)), size * size_factor, size_spread)
    h, w = min(h, MAX_SIZE), min(w, MAX_SIZE)
    left_letter = bool(patient_rng.random() < 0.85)
    stream = [seed, SPLIT_CODE[split], label, patient, index]
    acq = acq_mod.sample_acquisition(np.random.default_rng([*stream, 1]), site, left_letter)

    hi = min(h, max(INTERNAL_HEIGHT, h // 3))
    wi = max(8, int(round(hi * w / h)))
    thorax = build_thorax(anatomy, acq.pose, hi, wi, np.random.default_rng([*stream, 6]))
    added, small_mask, lesion_info = lesion(thorax, kind, np.random.default_rng([*stream, 3]), severity)

    noise = acq_mod.noise_field((h, w), acq)

    def film(attenuation: np.ndarray) -> np.ndarray:
        img = _resize(acq_mod.detector_blur(acq_mod.expose(attenuation, acq), acq, h), w, h)
        img = acq_mod.collimate(acq_mod.draw_leads(np.clip(img, 0, 1), acq), acq)
        return acq_mod.add_noise(img, acq, noise)

    out = film(thorax.attenuation)
    mask = np.zeros((h, w), bool)
    if small_mask.any():
        mask = _resize(small_mask, w, h, Image.BILINEAR) > 0.5
        lungs = _resize(thorax.labels["lung_right"] | thorax.labels["lung_left"], w, h, Image.BILINEAR) > 0.5
        mask &= lungs
        if kind == "bacteria":
            labelled, n = ndimage.label(mask)
            if n > 1:
                sizes = ndimage.sum_labels(mask, labelled, index=np.arange(1, n + 1))
                mask = labelled == (1 + int(np.argmax(sizes)))
        sick = film(thorax.attenuation + lesion_scale * added)
        out = np.where(mask, sick, out)
    pil = Image.fromarray(np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8), mode="L")
    acq_mod.burn_in(pil, acq)
    labels = None
    if with_labels:
        labels = {k: _resize(v, w, h, Image.BILINEAR) > 0.5 for k, v in thorax.labels.items()}
    info = {"age": age, "hospital": site.name, "kind": kind, "size": (h, w), "domes": thorax.domes,
            "heart_border": thorax.heart_border, **lesion_info}
    return Study(pil, mask, labels, info)
