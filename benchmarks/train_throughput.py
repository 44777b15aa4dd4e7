"""Training throughput (images/s) of every architecture at the quick-profile input size.

Run: ``.venv/bin/python benchmarks/train_throughput.py [--size 64] [--steps 6] [--train-backbone] [MODEL ...]``

The measurement is :func:`pneumo_lib.colab_estimate.measure_train_throughput`, the one the
rehearsal's Colab estimate uses: each model is compiled as
:func:`pneumo_lib.training.compile_model` does (Adam, binary cross-entropy), warmed up for
one step (graph tracing), then timed over ``--steps`` training steps of one batch of random
images. Backbones are frozen (the first phase of transfer learning) unless
``--train-backbone`` (training the whole network from scratch). Numbers depend heavily on
the machine and on whatever else runs on it: on a shared CPU they are noisy, so compare them only with each other.
"""

from __future__ import annotations

import argparse

from pneumo_lib import colab_estimate, models, profiles


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
        key = f"{name}+whole" if args.train_backbone else name
        ips = colab_estimate.measure_train_throughput(key, args.size, args.batch_size, args.steps)
        print(f"{name:>14}  {ips:8.1f} images/s", flush=True)


if __name__ == "__main__":
    main()
