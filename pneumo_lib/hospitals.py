"""Another hospital: a model trained at one site, measured on another site's images (issue 16).

The chapter "Another hospital" and ``benchmarks/hospital_shift.py`` share these pieces:

* :func:`measure`: one model on one split of one dataset: ROC AUC, sensitivity and
  specificity at the model's own threshold, expected calibration error, and where Grad-CAM
  points on the split's PNEUMONIA images (pointing game, energy inside the lesion mask).
* :func:`derived_datasets`: the two mitigations' datasets made from the phantoms of
  hospitals A and B: their CLAHE copies (:func:`pneumo_lib.data.equalized_copy`) and the
  two hospitals pooled (:func:`pneumo_lib.data.pooled_copy` with ``same_patients``: the
  phantom's hospitals filmed the same patients, so each training patient comes from one of
  them, and the pool is as large as one hospital's), written once beside the phantoms, then
  reused.
* :func:`drop_recovered`: the share of the A-to-B drop in ROC AUC a mitigation wins back.

Everything here runs on the phantom's hospitals, generated data: nothing in it is a
clinical result.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from pneumo_lib import cam, calibration, data, decision, evaluation, faithfulness

#: The keys of :func:`measure`'s result, in the order tables show them.
MEASURES = ("ROC AUC", "sensitivity", "specificity", "ECE", "pointing", "energy in lesion", "lesion share")


def measure(model: Any, manifest: Any, image_size: int, n_explain: int, *, split: str = "test") -> dict[str, float]:
    """Test metrics and Grad-CAM localisation of one model on one dataset's split.

    Args:
        model: A trained two-class Keras model (sigmoid or two-unit softmax head) taking
            ``(N, image_size, image_size, C)`` images in [0, 1] (``C`` read from its input),
            or anything with a ``.model`` attribute holding one (a
            :class:`pneumo_lib.experiments.CachedModel`). Its decision threshold is
            :func:`pneumo_lib.decision.model_threshold` (the card's validation threshold for a
            cached model, 0.5 otherwise).
        manifest: A :class:`pneumo_lib.data.SplitManifest` of a dataset whose PNEUMONIA images
            have lesion masks (a phantom, or a copy derived from one).
        image_size: Side in pixels the images and masks are resized to.
        n_explain: Grad-CAM explains the first ``n_explain`` PNEUMONIA images of the split
            (at least one is needed).
        split: Which split of ``manifest`` (default ``"test"``).

    Returns:
        ``{name: value}`` with the keys of :data:`MEASURES`, every value a float in [0, 1]:
        ``ROC AUC``; ``sensitivity`` and ``specificity`` at the model's threshold; ``ECE``
        (10 equal-width bins, :func:`pneumo_lib.calibration.expected_calibration_error`);
        ``pointing`` (share of the explained images whose Grad-CAM maximum lies inside the
        lesion); ``energy in lesion`` (mean share of the map's value inside the lesion);
        ``lesion share`` (mean share of the image the lesions cover: what a map spread evenly
        would put inside).
    """
    model = getattr(model, "model", model)
    paths = np.array(manifest.paths(split))
    y = manifest.labels(split)
    x = data.load_images(paths, image_size, channels=int(model.input_shape[-1]))
    p = cam.predict(model, x)[1][:, 1]
    metrics = evaluation.binary_metrics(y, p, decision.model_threshold(model))
    sick = np.flatnonzero(y == 1)[:n_explain]
    masks = data.load_masks(paths[sick], image_size)
    maps = cam.grad_cam(model, x[sick], class_index=1)
    return {
        "ROC AUC": float(metrics["roc_auc"]),
        "sensitivity": float(metrics["recall"]),
        "specificity": float(metrics["specificity"]),
        "ECE": float(calibration.expected_calibration_error(y, p)),
        "pointing": float(faithfulness.pointing_game(maps, masks)),
        "energy in lesion": float(np.mean(faithfulness.energy_inside(maps, masks))),
        "lesion share": float(masks.mean()),
    }


def derived_datasets(sites: dict[str, str | os.PathLike], scale: str = "quick", seed: int = 42) -> dict[str, Any]:
    """The mitigations' copies of the phantoms of hospitals A and B (written once, then reused).

    Args:
        sites: ``{"A": chest_xray folder, "B": chest_xray folder}``, as
            ``data.ensure_phantom(scale, seed, hospital=site)`` returns them.
        scale, seed: The phantoms' scale and seed (they name the pooled folder).

    Returns:
        ``{"clahe": {site: chest_xray folder of its CLAHE copy}, "pooled": chest_xray folder
        of both hospitals pooled}``. The pool's train and val films are A's, each patient
        filmed at A or at B (about half each, dealt with ``seed``); its test films are both
        hospitals' test splits. Each CLAHE copy lies beside its phantom
        (``<phantom folder>-clahe``), the pooled one beside hospital A's phantom
        (``phantom-<scale>-seed<seed>-pooledAB``).
    """
    root = data.phantom_root(scale, seed)
    clahe = {site: data.equalized_copy(folder, Path(folder).parent.with_name(Path(folder).parent.name + "-clahe"))
             for site, folder in sites.items()}
    pooled = data.pooled_copy(dict(sites), root.with_name(f"phantom-{scale}-seed{seed}-pooledAB"),
                              same_patients=True, seed=seed)
    return {"clahe": clahe, "pooled": pooled}


def drop_recovered(auc_a_on_a: float, auc_a_on_b: float, auc_mitigated_on_b: float) -> float:
    """Share of the A-to-B drop in ROC AUC a mitigation wins back on B.

    ``(auc_mitigated_on_b - auc_a_on_b) / (auc_a_on_a - auc_a_on_b)``: 0 when the mitigated
    model does no better on B than the A-trained one, 1 when it reaches the A-trained model's
    score on A (more than 1 when it exceeds it, negative when it does worse).

    Raises:
        ValueError: There is no drop (``auc_a_on_a <= auc_a_on_b``).
    """
    drop = auc_a_on_a - auc_a_on_b
    if not drop > 0:
        raise ValueError(f"No drop in ROC AUC from A ({auc_a_on_a:.3f}) to B ({auc_a_on_b:.3f}): nothing to recover.")
    return float((auc_mitigated_on_b - auc_a_on_b) / drop)
