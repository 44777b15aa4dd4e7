"""``pneumo bench cam``: Grad-CAM throughput, side by side in one run.

Compared on one batch of random images through a *flat* functional model (the keras.io
recipe and tf-keras-vis fail on a nested backbone, which the run also shows):

* ours: :func:`pneumo_lib.cam.grad_cam` on the whole batch (steady state, compiled; and its
  first calls, which run eagerly);
* the keras.io recipe ("Grad-CAM class activation visualization"), one image at a time, with
  its gradient model built once (the published recipe rebuilds it on every call, which would
  only make it slower);
* tf-keras-vis ``Gradcam`` (if installed) on the whole batch;
* the floor: one compiled forward pass plus a backward pass to the target layer, and to the
  input, on the same batch. The floors are the plain textbook passes (a tape watching the
  input and the weights, the summed scores differentiated), compiled like ours: a
  ``tf.function`` with the same input signature (any batch size), run on the same batch,
  with their results fetched to NumPy as ours are. They skip what every call of ours pays
  (converting and checking the NumPy batch), so the ratio overstates our overhead rather
  than hides it.

Timings are medians over ``--repeats`` runs after a warm-up; ours and the two floors are timed
in turns. On a shared CPU the absolute numbers are noisy; the ratios, measured side by side in
one run, are what to compare.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np

#: Flat models the comparison runs on.
BENCH_MODELS = ("paper_cnn", "mobilenet_v2")


def bench_subparsers(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The ``pneumo bench`` action's sub-parsers, creating ``bench`` on first use.

    Other areas add their benchmarks with ``bench_subparsers(subparsers).add_parser(...)``.
    """
    if "bench" not in subparsers.choices:
        parser = subparsers.add_parser("bench", help="benchmarks that print ratios side by side")
        parser.set_defaults(bench_actions=parser.add_subparsers(dest="bench_command", metavar="BENCHMARK", required=True))
    return subparsers.choices["bench"].get_default("bench_actions")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = bench_subparsers(subparsers).add_parser(
        "cam",
        help="Grad-CAM maps/s: ours (batched) vs the keras.io per-image recipe vs tf-keras-vis",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--model", choices=BENCH_MODELS, default="mobilenet_v2", help="flat model to explain (default: mobilenet_v2)")
    parser.add_argument("--size", type=int, default=96, help="input side in pixels (default: 96)")
    parser.add_argument("--batch", type=int, default=32, help="images per batch (default: 32)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats after warm-up (default: 5)")
    parser.set_defaults(handler=_run)


def flat_model(name: str, size: int):
    """A flat functional classifier (no nested sub-model) with a ``logits`` -> sigmoid head.

    Returns ``(model, target layer name)``.
    """
    from pneumo_lib import cam, models
    from pneumo_lib._tf import keras

    if name == "paper_cnn":
        model = models.build_model(name, size, weights=None)
        return model, cam.find_target_layer(model)
    backbone = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone.output)
    logits = keras.layers.Dense(1, name="logits")(x)
    model = keras.Model(backbone.input, keras.layers.Activation("sigmoid", name="prediction")(logits), name="flat_mobilenet_v2")
    return model, "out_relu"


def keras_io_recipe(model, layer: str) -> Callable[[np.ndarray], np.ndarray]:
    """The keras.io Grad-CAM recipe, applied image by image (gradient model built once)."""
    from pneumo_lib._tf import keras, tf

    target = model
    for name in layer.split("/"):  # "backbone/layer": how users reach into a nested model
        target = target.get_layer(name)
    grad_model = keras.models.Model(model.inputs, [target.output, model.output])

    def one(img_array):
        with tf.GradientTape() as tape:
            last_conv_layer_output, preds = grad_model(img_array)
            pred_index = tf.argmax(preds[0])
            class_channel = preds[:, pred_index]
        grads = tape.gradient(class_channel, last_conv_layer_output)
        pooled_grads = tf.reduce_mean(grads, axis=(0, 1, 2))
        heatmap = last_conv_layer_output[0] @ pooled_grads[..., tf.newaxis]
        heatmap = tf.squeeze(heatmap)
        heatmap = tf.maximum(heatmap, 0) / tf.math.reduce_max(heatmap)
        return heatmap.numpy()

    return lambda images: np.stack([one(images[i : i + 1]) for i in range(len(images))])


def tf_keras_vis_gradcam(model, layer: str) -> Callable[[np.ndarray], np.ndarray]:
    """tf-keras-vis ``Gradcam`` on the whole batch (logit via ``ReplaceToLinear``)."""
    layer = layer.split("/")[-1]
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import BinaryScore

    gradcam = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
    return lambda images: gradcam(BinaryScore(1.0), images, penultimate_layer=layer)


def floors(model, layer: str, images: np.ndarray):
    """Compiled forward+backward passes: to the target layer (via our traced graph) and to the input.

    Compiled like ours, with the input signature ``(None, H, W, C)``: a ``tf.function`` traced
    for the one batch shape of the benchmark could specialise on it, which ours, serving any
    batch size with one graph, cannot. Returns two functions of the (ignored) NumPy batch,
    each running its pass on ``images`` (already a tensor) and returning NumPy arrays.
    """
    from pneumo_lib import cam
    from pneumo_lib._tf import tf

    graph = cam.feature_model(model, layer, input_shape=images.shape[1:])
    signature = [tf.TensorSpec((None, *images.shape[1:]), tf.float32)]

    @tf.function(input_signature=signature)
    def to_layer(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            scores, features = graph(x, training=False)
            total = tf.reduce_sum(scores)
        # Return the features too: Grad-CAM needs them, and without them TensorFlow may
        # prune the forward pass (the head's gradient need not depend on the features).
        return features, tape.gradient(total, features)

    @tf.function(input_signature=signature)
    def to_input(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(model(x, training=False))
        return tape.gradient(total, x)

    x = tf.constant(images)
    return (lambda _: [t.numpy() for t in to_layer(x)]), (lambda _: to_input(x).numpy())


def _median_seconds(fn, images, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn(images)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(images)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _interleaved_median_seconds(fns, images, repeats: int, warmup: int = 2) -> list[float]:
    """Median seconds of each function, timed in turns so that load changes hit all alike."""
    for fn in fns:
        for _ in range(warmup):
            fn(images)
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times):
            start = time.perf_counter()
            fn(images)
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) for bucket in times]


def _first_calls_seconds(model, images, layer: str) -> float:
    """Median time of our first (eager) calls, on a fresh trace of the model."""
    from pneumo_lib import cam

    cam.clear_cache()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        cam.grad_cam(model, images, layer=layer, batch_size=len(images))
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def _nested_failures(size: int) -> list[tuple[str, str]]:
    """What the two public recipes say on the library's nested MobileNetV2 classifier."""
    from pneumo_lib import models

    nested = models.build_model("mobilenet_v2", size, weights=None)
    images = np.zeros((1, size, size, 3), np.float32)
    out = []
    for label, make in (("keras.io recipe", keras_io_recipe), ("tf-keras-vis Gradcam", tf_keras_vis_gradcam)):
        try:
            make(nested, "mobilenet_v2/out_relu")(images)
            out.append((label, "works"))
        except Exception as err:  # noqa: BLE001 - we report whatever the recipe raises
            out.append((label, f"fails: {type(err).__name__}: {str(err).splitlines()[0][:90]}"))
    return out


def _run(args: argparse.Namespace) -> int:
    from pneumo_lib import cam, runtime

    if args.batch < 1 or args.size < 32 or args.repeats < 1:
        raise ValueError("--batch and --repeats must be positive and --size at least 32.")
    runtime.seed_everything(0, deterministic=False)
    model, layer = flat_model(args.model, args.size)
    channels = model.inputs[0].shape[-1]
    images = np.random.default_rng(0).random((args.batch, args.size, args.size, channels), dtype=np.float32)

    print(f"Grad-CAM on {model.name} (flat functional, random weights), layer {layer}, "
          f"{args.size} px, batch {args.batch}, median of {args.repeats} after warm-up.")
    print("Shared CPU: absolute times are noisy; the ratios are measured side by side.\n")
    eager_first = _first_calls_seconds(model, images, layer)
    with cam.eager_calls(0):
        ours_fn = lambda x: cam.grad_cam(model, x, layer=layer, batch_size=len(x))  # noqa: E731
        ours, floor_layer, floor_input = _interleaved_median_seconds([ours_fn, *floors(model, layer, images)], images, args.repeats)
        rows = [("ours, batched (compiled)", ours)]
    rows.append(("ours, batched (first calls, eager)", eager_first))
    rows.append(("keras.io recipe, per image", _median_seconds(keras_io_recipe(model, layer), images, max(1, args.repeats // 2), warmup=1)))
    try:
        rows.append(("tf-keras-vis Gradcam, batched", _median_seconds(tf_keras_vis_gradcam(model, layer), images, args.repeats)))
    except ImportError:
        rows.append(("tf-keras-vis Gradcam (not installed)", float("nan")))
    rows.append(("floor: forward+backward to layer", floor_layer))
    rows.append(("floor: forward+backward to input", floor_input))

    print(f"{'':38} {'s/batch':>9} {'maps/s':>9} {'time / ours':>12}")
    for label, seconds in rows:
        print(f"{label:38} {seconds:9.4f} {args.batch / seconds:9.1f} {seconds / ours:11.2f}x")
    print()
    print(f"speed-up over the keras.io per-image recipe: {rows[2][1] / ours:6.2f}x  (target >= 5)")
    print(f"speed-up over tf-keras-vis Gradcam:          {rows[3][1] / ours:6.2f}x  (target >= 1)")
    print(f"Grad-CAM batch / forward+backward to layer:  {ours / floor_layer:6.2f}x  (target <= 1.3)")
    print(f"Grad-CAM batch / forward+backward to input:  {ours / floor_input:6.2f}x")
    print("\nOn the library's nested MobileNetV2 classifier:")
    for label, result in _nested_failures(args.size):
        print(f"  {label}: {result}")
    print("  ours: works (see tests/test_cam_backbones.py)")
    return 0
