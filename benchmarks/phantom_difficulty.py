"""How hard the phantom is: test ROC AUC of the book's CNNs over several profile seeds.

Run: ``.venv/bin/python benchmarks/phantom_difficulty.py [--seeds 42 1 2 3 4] [--models paper_cnn project_b_cnn]``

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

#: The issue's targets: the paper CNN's test ROC AUC inside this range, every model below the ceiling.
PAPER_RANGE = (0.90, 0.97)
CEILING = 0.99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3, 4])
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
    print(f"{'model':<15}" + "".join(f"{'seed ' + str(s):>10}" for s in args.seeds) + f"{'mean':>8}{'range':>16}")
    for name, values in table.items():
        print(f"{name:<15}" + "".join(f"{v:>10.4f}" for v in values)
              + f"{np.mean(values):>8.4f}{min(values):>8.4f}-{max(values):.4f}")
    for line in target_report(table, args.seeds):
        print(line)


def target_report(table: dict[str, list[float]], seeds: list[int]) -> list[str]:
    """The issue's two targets, each met or missed, from ``{model: [ROC AUC per seed]}``.

    Four decimals: 0.98974 is below 0.99 and prints as 0.9897, where three decimals would
    show 0.990.
    """
    lines = []
    if "paper_cnn" in table:
        paper = table["paper_cnn"]
        inside = all(PAPER_RANGE[0] <= v <= PAPER_RANGE[1] for v in paper)
        lines.append(f"paper_cnn between {PAPER_RANGE[0]:.2f} and {PAPER_RANGE[1]:.2f} on every seed: "
                     f"{'met' if inside else 'MISSED'} ({min(paper):.4f} to {max(paper):.4f})")
    top_model, top_seed, top = max(((m, s, v) for m, vs in table.items() for s, v in zip(seeds, vs)),
                                   key=lambda t: t[2])
    lines.append(f"every model below {CEILING:.2f}: {'met' if top < CEILING else 'MISSED'} "
                 f"(highest {top:.4f}, {top_model} on seed {top_seed})")
    return lines


if __name__ == "__main__":
    main()
