"""How much the pointing game moves from one training to the next (chapter 05's spread).

Run: ``.venv/bin/python benchmarks/pointing_game_seeds.py [--seeds 42 1 2 3] [--model project_b_cnn]
[--layer block4_conv] [--tolerance 4]``

For each seed, the quick profile with that seed (its own phantom data set, split and
initialisation) trains the model through the chapters' cache (about a minute per seed on a
CPU the first time; a new seed also generates its phantom data set), then scores Grad-CAM,
Grad-CAM++ and Score-CAM at ``--layer`` on the first ``n_explain`` PNEUMONIA test images,
as chapter 05 does: strict, and within ``--tolerance`` pixels of the lesion, beside the
centre and random baselines of the same images. Phantom data, quick profile: not clinical.
"""

from __future__ import annotations

import argparse

import numpy as np

from pneumo_lib import cam, data, experiments, faithfulness
from pneumo_lib.profiles import get_profile

METHODS = {"Grad-CAM": cam.grad_cam, "Grad-CAM++": cam.grad_cam_plus_plus, "Score-CAM": cam.score_cam}


def scores(seed: int, model_name: str, layer: str, tolerance: int) -> tuple[float, dict[str, tuple[float, float]]]:
    """``(test ROC AUC, {method: (strict, tolerant)})`` for one seed, baselines included."""
    profile = get_profile("quick", seed=seed)
    run = experiments.cached_training(model_name, profile)
    manifest = data.make_splits(data.ensure_dataset(profile), seed=profile.seed)
    paths = [p for p, y in zip(manifest.paths("test"), manifest.labels("test")) if y == 1][:profile.n_explain]
    images = data.load_images(paths, profile.image_size)
    lesions = data.load_masks(paths, profile.image_size)
    maps = {name: explain(run.model, images, layer=layer, class_index=1) for name, explain in METHODS.items()}
    maps["centre baseline"] = faithfulness.center_map(lesions.shape)
    maps["random baseline"] = faithfulness.random_map(lesions.shape, seed=seed)
    table = {name: (faithfulness.pointing_game(m, lesions), faithfulness.pointing_game(m, lesions, tolerance=tolerance))
             for name, m in maps.items()}
    return run.card["evaluation"]["metrics"]["roc_auc"], table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3])
    parser.add_argument("--model", default="project_b_cnn")
    parser.add_argument("--layer", default="block4_conv")
    parser.add_argument("--tolerance", type=int, default=4)
    args = parser.parse_args()
    rows = {}
    for seed in args.seeds:
        auc, table = scores(seed, args.model, args.layer, args.tolerance)
        rows[seed] = table
        print(f"seed {seed}: test ROC AUC {auc:.3f}", flush=True)
    names = list(next(iter(rows.values())))
    print(f"\nPointing game, {args.model} at {args.layer}, quick profile, phantom test PNEUMONIA images "
          f"(strict / within {args.tolerance} px)")
    print(f"{'seed':>6} " + " ".join(f"{n:>17}" for n in names))
    for seed, table in rows.items():
        print(f"{seed:>6} " + " ".join(f"{table[n][0]:>8.2f} / {table[n][1]:.2f}" for n in names))
    means = {n: np.mean([t[n][1] for t in rows.values()]) for n in names}
    print(f"{'mean':>6} " + " ".join(f"{'':>8}   {means[n]:.2f}" for n in names))


if __name__ == "__main__":
    main()
