"""Grad-CAM, Grad-CAM++ and Score-CAM for any Keras 3 image classifier.

The three methods share one signature::

    heatmaps = grad_cam(model, images, layer=None, class_index=None, threshold=None,
                        batch_size=32, normalize=True)

* ``images``: a batch already prepared for the model, ``(N, H, W, C)`` float32 with values
  in ``[0, 1]`` (integer or 0-255 images are refused with a ``ValueError``).
* returns ``(N, H, W)`` float32 maps at the input's resolution, each divided by its own
  maximum (so in ``[0, 1]``; a map that is zero everywhere comes back as zeros, never NaN).
  ``normalize=False`` returns the raw ``ReLU`` map instead, upsampled the same way, for
  figures that compare maps on one scale and state the raw maximum.
* ``layer=None`` picks the target layer with :func:`find_target_layer`; a name may also
  refer to a layer inside a nested backbone (``"block5_conv3"`` or ``"vgg16/block5_conv3"``).
* ``class_index=None`` explains the class the project's rule predicts
  (:mod:`pneumo_lib.decision`: PNEUMONIA when P(PNEUMONIA) >= ``threshold``, by default the
  model card's validation threshold, else 0.5); an int or one int per image explains that
  class. Single-sigmoid heads are explained through the logit (class 1) or the negated
  logit (class 0, NORMAL); softmax heads through the pre-softmax score of the class.

The modules, one idea each: :mod:`~pneumo_lib.cam.tracing` (re-tracing a model into one
graph ``images -> (scores, feature map)``, nested backbones included, and the tap that lets
a tape watch the feature map), :mod:`~pneumo_lib.cam.layers` (which layer to explain),
:mod:`~pneumo_lib.cam.cache` (traced graphs per model), :mod:`~pneumo_lib.cam.base` (input
checks, the explained class, batching, normalisation, :func:`predict`), one module per
method, and :mod:`~pneumo_lib.cam.overlay` (drawing). The functions are safe to call from
several threads on one shared model.
"""

from __future__ import annotations

from pneumo_lib.cam.base import eager_calls, feature_model, normalize_maps, predict
from pneumo_lib.cam.cache import clear_cache
from pneumo_lib.cam.grad_cam import grad_cam
from pneumo_lib.cam.grad_cam_plus_plus import grad_cam_plus_plus
from pneumo_lib.cam.layers import find_target_layer, resolve_layer, spatial_layers
from pneumo_lib.cam.overlay import DEFAULT_CMAP, overlay, show
from pneumo_lib.cam.score_cam import score_cam

__all__ = [
    "grad_cam",
    "grad_cam_plus_plus",
    "score_cam",
    "find_target_layer",
    "spatial_layers",
    "resolve_layer",
    "predict",
    "overlay",
    "show",
    "DEFAULT_CMAP",
    "normalize_maps",
    "feature_model",
    "clear_cache",
    "eager_calls",
    "METHODS",
]

#: The CAM methods by the names the command line and the chapters use.
METHODS = {"gradcam": grad_cam, "gradcampp": grad_cam_plus_plus, "scorecam": score_cam}
