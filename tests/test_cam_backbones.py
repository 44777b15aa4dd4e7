"""Every CAM method on every architecture of :mod:`pneumo_lib.models`, batch sizes 1 and 5.

Random weights and small inputs (these are plumbing tests: the maps' correctness is checked on
the known-answer models). The backbones are nested inside the functional classifier, after a
preprocessing layer and before the ``logits`` -> ``prediction`` head, which is where the
usual Keras recipes fail. Score-CAM runs on the 4 most varied channels per image here
(``max_channels``) to keep the suite fast; the full method is checked on the known-answer models.
"""

from __future__ import annotations

import numpy as np
import pytest

from pneumo_lib import cam, models

SIZES = (32, 64)


@pytest.fixture(scope="module", params=models.MODEL_NAMES)
def family(request):
    # Inputs below an architecture's minimum (Xception: 71 px) are built at that minimum and
    # the next size up, under the same keys.
    low = models.architecture(request.param).min_size
    sizes = SIZES if low <= SIZES[0] else (low, low + 25)
    return {key: models.build_model(request.param, size, weights=None) for key, size in zip(SIZES, sizes)}


def test_the_usual_grad_cam_layer_is_found_even_inside_the_nested_backbone(family):
    model = family[SIZES[0]]
    expected = models.architecture_of(model).cam_layer
    assert cam.find_target_layer(model) == expected
    backbone = models.backbone_of(model)
    path = expected if backbone is None else f"{backbone.name}/{expected}"
    assert path in cam.spatial_layers(model)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("method", sorted(cam.METHODS))
def test_every_method_batch_1_and_5(family, size, method):
    model = family[size]
    channels = model.inputs[0].shape[-1]
    size = model.inputs[0].shape[1]
    images = np.random.default_rng(size).random((5, size, size, channels), dtype=np.float32)
    kwargs = {"max_channels": 4} if method == "scorecam" else {}
    explain = cam.METHODS[method]
    five = explain(model, images, **kwargs)
    one = explain(model, images[:1], **kwargs)
    assert five.shape == (5, size, size) and one.shape == (1, size, size)
    assert five.dtype == np.float32 and np.all(np.isfinite(five))
    assert five.min() >= 0.0 and five.max() <= 1.0
    assert all(m.max() in (0.0, 1.0) for m in five), "each map is scaled to a maximum of 1 (or all zero)"
    np.testing.assert_allclose(one[0], five[0], atol=1e-4)
