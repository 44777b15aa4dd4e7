"""How hard the phantom is: test ROC AUC of the book's CNNs over several profile seeds.

Run: ``.venv/bin/python benchmarks/phantom_difficulty.py [--seeds 42 1 2] [--models paper_cnn project_b_cnn]``

For each seed, the quick profile with that seed generates its own phantom dataset (timed:
the data benchmark's target is at most 60 s on a 2-core machine) and trains each model
through the chapters' cache, exactly as chapter 02 does (8 epochs at 64 px, about two
to three minutes per model on 2 CPU cores the first time). The target (issue "phantom
radiographs"): the paper's CNN between 0.90 and 0.97, no model at 0.99 or above; the
real-data references are 0.968 (Kermany et al. 2018) and 0.944 to 0.962 (PneumoniaMNIST
ResNets). Generated data: these are not clinical results.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pneumo_lib import data, experiments
from pneumo_lib.profiles import get_profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--models", nargs="+", default=["paper_cnn", "project_b_cnn"])
    args = parser.parse_args()
    table: dict[str, list[float]] = {m: [] for m in args.models}
    for seed in args.seeds:
        profile = get_profile("quick", seed=seed)
        start = time.perf_counter()
        data.ensure_dataset(profile)
        print(f"seed {seed}: phantom data ready in {time.perf_counter() - start:.0f} s", flush=True)
        for name in args.models:
            start = time.perf_counter()
            auc = experiments.cached_training(name, profile).card["evaluation"]["metrics"]["roc_auc"]
            table[name].append(auc)
            print(f"  {name}: test ROC AUC {auc:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    print("\nTest ROC AUC, quick profile, phantom data (generated, not clinical)")
    print(f"{'model':<15}" + "".join(f"{'seed ' + str(s):>10}" for s in args.seeds) + f"{'mean':>8}{'range':>14}")
    for name, values in table.items():
        print(f"{name:<15}" + "".join(f"{v:>10.3f}" for v in values)
              + f"{np.mean(values):>8.3f}{min(values):>7.3f}-{max(values):.3f}")


if __name__ == "__main__":
    main()
