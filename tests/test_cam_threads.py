"""The CAM functions on one shared model from several threads, and the per-model cache."""

from __future__ import annotations

import gc
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from _cam_models import detector_model, disc_images
from pneumo_lib import cam
from pneumo_lib.cam import cache


def test_a_thread_pool_on_one_shared_model_gives_the_sequential_maps():
    """4 threads x 24 calls mixing methods, heads' classes and a plain model call, on one model.

    The head's sigmoid is skipped without touching the layer, so the plain ``model(x)`` calls
    interleaved with the CAM calls must keep returning probabilities.
    """
    model = detector_model("nested", "sigmoid")
    images = np.concatenate([disc_images(3, seed=4)[0], np.zeros((1, 32, 32, 1), np.float32)])
    jobs = [(name, c) for name in ("gradcam", "scorecam", "gradcampp") for c in (None, 0, 1)] * 8
    cam.clear_cache()  # let the threads race for the first trace too

    def run(job):
        name, c = job
        probabilities = np.asarray(model(images, training=False))
        return probabilities, cam.METHODS[name](model, images, class_index=c, batch_size=2)

    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(run, jobs))
    expected_p = np.asarray(model(images, training=False))
    assert np.all((expected_p > 0) & (expected_p < 1)), "the model still ends in its sigmoid"
    sequential = {job: cam.METHODS[job[0]](model, images, class_index=job[1], batch_size=2) for job in set(jobs)}
    for job, (probabilities, maps) in zip(jobs, concurrent):
        np.testing.assert_allclose(probabilities, expected_p, atol=1e-6)
        np.testing.assert_allclose(maps, sequential[job], atol=1e-5, err_msg=str(job))
    assert any(m.max() > 0 for _, m in concurrent)


def test_the_cache_follows_the_model_object_not_its_id():
    """A dead model's graphs go with it; a new model (whatever its id) gets its own."""
    images = disc_images(2, seed=5)[0]
    cam.clear_cache()
    first = detector_model("flat", "sigmoid")
    cam.grad_cam(first, images)
    assert cache.cached_models() == 1
    del first
    gc.collect()
    assert cache.cached_models() == 0, "a traced graph must not keep its model alive"
    # Same architecture and layer names, opposite head: its own maps, never the dead model's.
    flipped = detector_model("flat", "sigmoid", scale=-1.0)
    plain = detector_model("flat", "sigmoid")
    np.testing.assert_allclose(cam.grad_cam(flipped, images, class_index=1), cam.grad_cam(plain, images, class_index=0),
                               atol=1e-6)
    assert not np.allclose(cam.grad_cam(flipped, images, class_index=1), cam.grad_cam(plain, images, class_index=1))
