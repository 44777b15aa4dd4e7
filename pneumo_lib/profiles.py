"""The two parameter profiles every chapter and command runs with.

* ``quick``: what the book build, the stored chapter outputs and CI use. CPU only,
  the locally generated phantom dataset, small images and few epochs, so every
  chapter runs in minutes on a 2-core laptop.
* ``full``: what a reader runs on Google Colab with a GPU. The real Kaggle dataset,
  224 px inputs, ImageNet weights and GPU-sized epochs, as in the prior projects.

A chapter's ``parameters`` cell names the profile and may override any single
field (``papermill -p epochs 3``); :func:`get_profile` applies those overrides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Profile:
    """One consistent set of run parameters.

    Attributes:
        name: ``"quick"`` or ``"full"``.
        description: One line for humans.
        data_source: Where the images come from: ``"phantom"`` (generated here)
            or ``"kaggle"`` (the real dataset, downloaded with a Kaggle token).
        image_size: Side of the square model input in pixels.
        batch_size: Training and inference batch size.
        epochs: Maximum training epochs (early stopping may end sooner).
        fine_tune_epochs: Epochs of the second, fine-tuning phase of transfer learning.
        learning_rate: Adam learning rate for training from scratch / the frozen phase.
        fine_tune_learning_rate: Adam learning rate when fine-tuning backbone blocks.
        weights: ``"imagenet"`` to start backbones from ImageNet weights, ``None`` for
            random initialisation (the quick profile cannot download weights).
        phantom_scale: Size preset of the phantom dataset (``"quick"`` or ``"full"``,
            the latter with the Kaggle counts).
        seed: Seed for every random number generator.
        bootstrap_rounds: Resamples for bootstrap confidence intervals.
        n_explain: How many test images the explanation chapters explain.
        images_per_class: At most this many images of each class in each split of a
            non-phantom dataset (``None``, the default: all of them). When set,
            :func:`pneumo_lib.data.ensure_dataset` returns a seeded subset copied under
            ``PNEUMO_HOME`` (the source folder is never changed); the rehearsal
            (:func:`rehearsal`) uses it.
    """

    name: str
    description: str
    data_source: str
    image_size: int
    batch_size: int
    epochs: int
    fine_tune_epochs: int
    learning_rate: float
    fine_tune_learning_rate: float
    weights: str | None
    phantom_scale: str
    seed: int
    bootstrap_rounds: int
    n_explain: int
    images_per_class: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The profile as a plain dict (for model cards and cache keys).

        ``images_per_class`` is left out while it is ``None`` (all images), so the cache
        keys of models trained before the field existed stay valid.
        """
        values = dataclasses.asdict(self)
        if values["images_per_class"] is None:
            del values["images_per_class"]
        return values


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        description="CPU, generated phantom data, 64 px, few epochs: the stored book outputs and CI",
        data_source="phantom",
        image_size=64,
        batch_size=32,
        epochs=8,
        fine_tune_epochs=3,
        learning_rate=1e-3,
        fine_tune_learning_rate=1e-4,
        weights=None,
        phantom_scale="quick",
        seed=42,
        bootstrap_rounds=200,
        n_explain=64,
    ),
    "full": Profile(
        name="full",
        description="GPU (Colab), the real Kaggle dataset, 224 px, ImageNet weights",
        data_source="kaggle",
        image_size=224,
        batch_size=32,
        epochs=25,
        fine_tune_epochs=10,
        learning_rate=1e-4,
        fine_tune_learning_rate=1e-5,
        weights="imagenet",
        phantom_scale="full",
        seed=42,
        bootstrap_rounds=2000,
        n_explain=624,
    ),
}

FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Profile))
#: Fields for which ``None`` is a value (``weights=None``: random initialisation), not "keep".
NULLABLE: tuple[str, ...] = ("weights", "images_per_class")


class _Keep:
    """The type of :data:`KEEP`."""

    def __repr__(self) -> str:
        return "profiles.KEEP"


#: Pass as an override to keep the profile's value of any field (also those in :data:`NULLABLE`).
KEEP = _Keep()


def _positive_int(key: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or (isinstance(value, float) and value != number):
        raise ValueError(f"Profile field {key!r} takes a whole number of at least 1 (or None), got {value!r}.")
    return number


def profile_names() -> list[str]:
    """Names of the defined profiles, e.g. ``["quick", "full"]``."""
    return list(PROFILES)


def get_profile(name: str | Profile = "quick", **overrides: Any) -> Profile:
    """Return the named profile with single values overridden.

    Args:
        name: A profile name from :data:`PROFILES`, or a :class:`Profile` to copy.
        **overrides: Field values to replace. ``None`` means "keep the profile's
            value", so a chapter's parameters cell can declare ``epochs = None``
            and papermill can set it, except for the fields in :data:`NULLABLE`
            where ``None`` is a value: ``get_profile("full", weights=None)`` trains
            backbones from random weights (``"none"`` as a string too). :data:`KEEP`
            keeps any field. Numeric strings are converted to the field's type
            (papermill passes command-line values as strings).

    Returns:
        A new frozen :class:`Profile`. Inside a rehearsal (:data:`REHEARSAL_ENV` is ``1``)
        the name ``"full"`` gives :func:`rehearsal` of the full profile.

    Raises:
        ValueError: Unknown profile name or unknown field, naming the valid ones.
    """
    if isinstance(name, Profile):
        base = name
    else:
        if name not in PROFILES:
            raise ValueError(
                f"Unknown profile {name!r}. Valid profiles: {', '.join(PROFILES)}."
            )
        base = PROFILES[name]
        if name == "full" and rehearsing():
            base = rehearsal(base)
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ValueError(
            f"Unknown profile field(s) {', '.join(unknown)}. Valid fields: {', '.join(FIELDS)}."
        )
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is KEEP:
            continue
        if key in NULLABLE:
            value = None if value is None or str(value).lower() == "none" else value
            if key == "images_per_class" and value is not None:
                value = _positive_int(key, value)
            changes[key] = value
            continue
        if value is None:
            continue
        current = getattr(base, key)
        if isinstance(current, bool) or current is None:
            changes[key] = value
        elif isinstance(current, (int, float)) and isinstance(value, str):
            try:
                changes[key] = type(current)(value)
            except ValueError:
                raise ValueError(
                    f"Profile field {key!r} takes a {type(current).__name__}, got {value!r}."
                ) from None
        else:
            changes[key] = value
    return dataclasses.replace(base, **changes)


def profile_for_card(card: dict, profile: "str | Profile | None" = None) -> Profile:
    """The profile to evaluate a saved model with.

    Args:
        card: The model's card (``{}`` when it has none).
        profile: A profile name or object; None takes the profile recorded in the card
            (``card["profile_values"]``), or ``quick`` when the card records none.
    """
    if profile is None:
        values = card.get("profile_values")
        return Profile(**values) if values else get_profile("quick")
    return profile if isinstance(profile, Profile) else get_profile(profile)



#: Environment variable: when it is ``1``, ``get_profile("full")`` (by name, as the chapters
#: call it) returns :func:`rehearsal` of the full profile. ``pneumo book run --rehearse`` sets
#: it for the chapters' kernels; nothing else does.
REHEARSAL_ENV = "PNEUMO_REHEARSAL"

#: The sizes and counts a rehearsal shrinks, and to what. Every other field (data source,
#: weights, learning rates, seed, batch size) keeps the full profile's value, so every code
#: path of the full profile runs, on CPU, in minutes. The image side is the smallest every
#: backbone takes (Xception needs 71 px; the others 32).
REHEARSAL_SIZES: dict[str, Any] = {
    "image_size": 72,
    "epochs": 1,
    "fine_tune_epochs": 1,
    "images_per_class": 16,
    "bootstrap_rounds": 20,
    "n_explain": 8,
    # Demonstrations that need the phantom (lesion masks, the shortcut variant) use the
    # quick-sized phantom instead of the full one (5,856 images).
    "phantom_scale": "quick",
}


def rehearsal(profile: "str | Profile" = "full") -> Profile:
    """The profile shrunk for a CPU rehearsal: same code paths, small sizes and counts.

    Args:
        profile: The profile (or its name) to rehearse, normally ``"full"``.

    Returns:
        A copy with the fields of :data:`REHEARSAL_SIZES` replaced (each only made smaller:
        a value already below the rehearsal's is kept) and ``"(rehearsal)"`` added to the
        description; ``name``, ``data_source``, ``weights`` and the rest are unchanged.

    Raises:
        ValueError: Unknown profile name.
    """
    base = profile if isinstance(profile, Profile) else _base_profile(profile)
    changes: dict[str, Any] = {}
    for key, small in REHEARSAL_SIZES.items():
        current = getattr(base, key)
        if key == "phantom_scale":
            changes[key] = small
        elif current is None or current > small:
            changes[key] = small
    if "(rehearsal)" not in base.description:
        changes["description"] = base.description + " (rehearsal)"
    return dataclasses.replace(base, **changes)


def is_rehearsal(profile: Profile) -> bool:
    """True for a profile made by :func:`rehearsal`."""
    return profile.description.endswith("(rehearsal)")


def rehearsing() -> bool:
    """True when :data:`REHEARSAL_ENV` is ``1`` (inside a ``pneumo book run --rehearse`` kernel)."""
    import os

    return os.environ.get(REHEARSAL_ENV, "").strip() == "1"


def _base_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"Unknown profile {name!r}. Valid profiles: {', '.join(PROFILES)}.")
    return PROFILES[name]
