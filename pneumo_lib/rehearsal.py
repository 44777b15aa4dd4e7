"""A rehearsal of the full profile on CPU: what ``pneumo book run --profile full --rehearse`` sets up.

The full profile is what readers run on Colab with a GPU: the real Kaggle data, 3-channel
ImageNet backbones with their preprocessing, two-phase fine-tuning, the full evaluation and
CAM settings. The rehearsal runs every one of those code paths here, shrinking only sizes
and counts (:func:`pneumo_lib.profiles.rehearsal`). :func:`prepare` gets what it needs and
returns the environment the chapters' kernels run with:

``PNEUMO_REHEARSAL=1``
    ``profiles.get_profile("full")`` returns the shrunk profile.
``PNEUMO_KAGGLE_DIR``
    Only when there is no real download at ``$PNEUMO_DATA/kaggle/chest_xray`` (that one is
    used as it is, through a seeded subset copy; it is never modified): the Kaggle-shaped
    stand-in written under ``<home>/rehearsal/kaggle-standin``
    (:func:`pneumo_lib.data.standin.write_kaggle_standin`), kept out of the place a real
    download belongs.
``PNEUMO_IMAGENET_WEIGHTS``
    ``<home>/rehearsal/weights``: the real ImageNet Xception weights (offline from PyPI)
    and random stand-ins of the other backbones (:func:`pneumo_lib.models.write_rehearsal_weights`).

The notes :func:`prepare` returns (printed with the chapter report) say which data and
weights are stand-ins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pneumo_lib import paths
from pneumo_lib.profiles import REHEARSAL_ENV, rehearsal


@dataclass(frozen=True)
class RehearsalSetup:
    """What a rehearsal runs on.

    Attributes:
        env: Environment variables for the chapters' kernels (None unsets one).
        data_dir: The ``kaggle`` ``chest_xray`` folder the chapters subset.
        data_is_standin: True when that folder is the generated stand-in, not a download.
        weights: ``{backbone: LocalWeights}`` standing for ImageNet weights.
        notes: One line each: the data and every stand-in weights file, for the report.
    """

    env: dict[str, str | None]
    data_dir: Path
    data_is_standin: bool
    weights: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def stand_in_weights(self) -> list[str]:
        """Backbones whose "ImageNet" weights are random stand-ins, sorted."""
        return sorted(name for name, w in self.weights.items() if w.stand_in)


def weights_dir() -> Path:
    """Folder of the rehearsal's local ImageNet weights: ``<home>/rehearsal/weights``."""
    return paths.pneumo_home() / "rehearsal" / "weights"


def choose_data(seed: int = 42) -> tuple[Path, bool, dict[str, str | None]]:
    """The ``kaggle`` folder a rehearsal runs on, and the kernel variables that select it.

    A real download at ``$PNEUMO_DATA/kaggle/chest_xray`` is used as it is (only read: the
    chapters get a seeded subset copy of it); otherwise the stand-in under
    ``<home>/rehearsal/kaggle-standin`` is written (or reused) and ``PNEUMO_KAGGLE_DIR``
    points at it. Nothing is ever written into the ``kaggle`` data folder.

    Args:
        seed: Seed of the stand-in.

    Returns:
        ``(chest_xray folder, is it the stand-in?, {variable: value or None to unset})``.

    Raises:
        ValueError: The download exists but is not in the Kaggle layout (names the problem).
    """
    from pneumo_lib.data import standin

    saved = os.environ.pop(paths.KAGGLE_DIR_ENV, None)
    try:
        real = paths.dataset_dir("kaggle")
    finally:
        if saved is not None:
            os.environ[paths.KAGGLE_DIR_ENV] = saved
    if real.exists():
        from pneumo_lib.data import check_layout

        try:
            check_layout(real)
        except (FileNotFoundError, ValueError) as err:
            raise ValueError(f"The Kaggle download the rehearsal would use is not in the Kaggle layout: {err} "
                             f"Fix or move {real} (it was not changed), or run `pneumo data audit {real}`.") from None
        return real, False, {paths.KAGGLE_DIR_ENV: None}
    folder = standin.write_kaggle_standin(seed=seed)
    return folder, True, {paths.KAGGLE_DIR_ENV: str(folder)}


def prepare(seed: int | None = None, backbones: "tuple[str, ...] | None" = None) -> RehearsalSetup:
    """Get the rehearsal's data and weights (reused when already there) and its kernel environment.

    Args:
        seed: Seed of the stand-in data and weights (default: the full profile's seed).
        backbones: Backbones to get weights for (default: all of them).

    Returns:
        A :class:`RehearsalSetup`.
    """
    from pneumo_lib import models

    P = rehearsal("full")
    seed = P.seed if seed is None else seed
    env: dict[str, str | None] = {REHEARSAL_ENV: "1"}
    data_dir, is_standin, data_env = choose_data(seed)
    env.update(data_env)
    if is_standin:
        data_note = (f"data: STAND-IN (no Kaggle download at $PNEUMO_DATA/kaggle/chest_xray): "
                     f"Kaggle-shaped phantom images at {paths.display_path(data_dir)}")
    else:
        data_note = (f"data: the Kaggle download at {paths.display_path(data_dir)}, used as it is "
                     f"({P.images_per_class} images per split and class, copied)")
    weights = models.write_rehearsal_weights(weights_dir(), backbones, image_size=P.image_size, seed=seed)
    env[models.IMAGENET_DIR_ENV] = str(weights_dir())
    notes = [f"rehearsal of the full profile: image_size {P.image_size}, epochs {P.epochs}+{P.fine_tune_epochs}, "
             f"{P.images_per_class} images per split and class, {P.bootstrap_rounds} bootstrap rounds, "
             f"n_explain {P.n_explain}", data_note]
    for name, w in sorted(weights.items()):
        kind = "STAND-IN (random init, not ImageNet)" if w.stand_in else "real ImageNet weights"
        notes.append(f"weights {name}: {kind}: {paths.display_path(w.path)}")
    return RehearsalSetup(env, data_dir, is_standin, weights, notes)
