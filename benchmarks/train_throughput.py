"""Training throughput (images/s) of every architecture at the quick-profile input size.

Run: ``.venv/bin/python benchmarks/train_throughput.py [--size 64] [--steps 6] [--train-backbone] [MODEL ...]``

Each model is compiled as :func:`pneumo_lib.training.compile_model` does (Adam, binary
cross-entropy), warmed up for two steps (graph tracing), then timed over ``--steps``
training steps of one batch of random images. Backbones are frozen (the first phase of
transfer learning) unless ``--train-backbone`` (training the whole network from scratch). Numbers depend heavily on the machine and on
whatever else runs on it: on a shared CPU they are noisy, so compare them only with each other.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pneumo_lib import models, profiles, training


def throughput(name: str, size: int, batch_size: int, steps: int, train_backbone: bool = False) -> float:
    """Images per second of ``train_on_batch`` for one architecture."""
    options = {"train_backbone": True} if train_backbone and models.architecture(name).family == "backbone" else {}
    model = models.build_model(name, size, weights=None, **options)
    training.compile_model(model, learning_rate=1e-3)
    channels = model.input_shape[-1]
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, size, size, channels), dtype=np.float32)
    y = rng.integers(0, 2, (batch_size, 1)).astype("float32")
    for _ in range(2):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    quick = profiles.get_profile("quick")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(models.MODEL_NAMES))
    parser.add_argument("--size", type=int, default=quick.image_size)
    parser.add_argument("--batch-size", type=int, default=quick.batch_size)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--train-backbone", action="store_true", help="train backbones whole (from scratch)")
    args = parser.parse_args()
    mode = "whole backbones trained" if args.train_backbone else "backbones frozen"
    print(f"training throughput at {args.size} px, batch {args.batch_size} ({mode})")
    for name in args.models:
        ips = throughput(name, args.size, args.batch_size, args.steps, args.train_backbone)
        print(f"{name:>14}  {ips:8.1f} images/s", flush=True)


if __name__ == "__main__":
    main()
