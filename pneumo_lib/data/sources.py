"""Get the dataset a profile asks for: ``ensure_dataset(profile)``.

* ``phantom``: generated on first use (from the profile's ``seed`` and
  ``phantom_scale``) under :func:`pneumo_lib.paths.dataset_dir`; the shortcut
  variant and other seeds/scales get sibling folders (:func:`phantom_root`).
* ``kaggle``: must have been downloaded (``pneumo data download``); if absent the
  error says how.
* ``sample``: the 16 real Kaggle validation images (``pneumo data sample``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from pneumo_lib import paths
from pneumo_lib.data import phantom
from pneumo_lib.data.staging import one_writer
from pneumo_lib.profiles import Profile, get_profile

#: The phantom dataset the quick profile uses lives in ``<data>/phantom``; these are its settings.
DEFAULT_PHANTOM = ("quick", 42, False)


def _settings_of(shortcut) -> tuple[bool, "phantom.PhantomSettings | None"]:
    """``(shortcut?, settings)`` from ``shortcut=False | True | PhantomSettings(...)``."""
    if isinstance(shortcut, phantom.PhantomSettings):
        return True, (None if shortcut == phantom.DEFAULT_SETTINGS else shortcut)
    return bool(shortcut), None


def phantom_root(scale: str = "quick", seed: int = 42, shortcut: bool = False,
                 settings: "phantom.PhantomSettings | None" = None, hospital: str = "A") -> Path:
    """Folder of one phantom variant (holds ``chest_xray/``, ``masks/``, ``markers.csv``).

    The quick-profile default (scale ``quick``, seed 42, no shortcut) is
    ``paths.dataset_dir("phantom").parent`` (``<data>/phantom``); any other
    variant is ``<data>/phantom-<scale>-seed<seed>[-shortcut]``, and a shortcut variant
    drawn with other :class:`~pneumo_lib.data.phantom.PhantomSettings` than the default
    gets ``-shortcut-<8 hex digits of its settings>``.
    """
    base = paths.dataset_dir("phantom").parent
    if (scale, seed, shortcut) == DEFAULT_PHANTOM and hospital == "A":
        return base
    name = f"phantom-{scale}-seed{seed}" + ("" if hospital == "A" else f"-hospital{hospital}")
    name += "-shortcut" if shortcut else ""
    if shortcut and settings is not None and settings != phantom.DEFAULT_SETTINGS:
        name += "-" + hashlib.sha1(json.dumps(settings.as_params(), sort_keys=True).encode()).hexdigest()[:8]
    return base.with_name(name)


def ensure_phantom(scale: str = "quick", seed: int = 42, shortcut: bool = False,
                   verbose: bool = False, settings: "phantom.PhantomSettings | None" = None,
                   hospital: str = "A") -> Path:
    """Generate a phantom variant if it is absent (or was made from other settings).

    Args:
        settings: How the shortcut variant is drawn (default
            :data:`~pneumo_lib.data.phantom.DEFAULT_SETTINGS`); only with ``shortcut``.
        hospital: The acquisition site, ``"A"`` (the default) or ``"B"``: hospital ``B``
            gets its own folder (``...-hospitalB``).

    Returns:
        Its ``chest_xray`` folder.
    """
    spec = phantom.phantom_spec(scale, seed, shortcut=shortcut, settings=settings, hospital=hospital)
    root = phantom_root(scale, seed, shortcut, settings, hospital)
    if (root / "chest_xray").is_dir() and phantom.read_spec(root) == spec:
        return root / "chest_xray"
    # One generator at a time: other processes (a second notebook, a test run) wait here.
    with one_writer(root):
        if (root / "chest_xray").is_dir() and phantom.read_spec(root) == spec:
            return root / "chest_xray"
        if verbose:
            print(f"Generating the phantom dataset ({scale}, seed {seed}"
                  f"{', shortcut' if shortcut else ''}) in {root} ...", file=sys.stderr)
        return phantom.generate_phantom(root, spec, force=True)


def ensure_dataset(profile: str | Profile = "quick", *,
                   shortcut: "bool | phantom.PhantomSettings" = False,
                   verbose: bool = False) -> Path:
    """The ``chest_xray`` folder (Kaggle layout) for ``profile.data_source``.

    Args:
        profile: A profile name or :class:`~pneumo_lib.profiles.Profile`.
        shortcut: Phantom only: the variant whose train/val PNEUMONIA images all carry
            a marker token, with fainter lesions (test stays clean); see
            :mod:`pneumo_lib.data.phantom`. ``True`` for the default settings, or a
            :class:`~pneumo_lib.data.phantom.PhantomSettings` for another variant
            (its own folder), e.g. ``PhantomSettings(lesion_scale=1.0)``.
        verbose: Print a line to stderr when generating.

    Returns:
        The ``chest_xray`` folder. For a non-phantom source and a profile with
        ``images_per_class`` (the rehearsal), a seeded copy of at most that many images per
        split and class under ``PNEUMO_HOME`` (:func:`pneumo_lib.data.standin.subset_dataset`);
        the downloaded folder itself is never changed.

    Raises:
        FileNotFoundError: The Kaggle (or sample) dataset has not been downloaded;
            the message gives the command that downloads it.
        ValueError: ``shortcut`` asked for a non-phantom source.
    """
    profile = get_profile(profile) if not isinstance(profile, Profile) else profile
    source = profile.data_source
    shortcut, settings = _settings_of(shortcut)
    if source == "phantom":
        return ensure_phantom(profile.phantom_scale, profile.seed, shortcut, verbose, settings)
    if shortcut:
        raise ValueError(f"The shortcut variant exists only for phantom data, not {source!r}.")
    folder = paths.dataset_dir(source)
    if not folder.is_dir():
        how = {"kaggle": "pneumo data download (needs a Kaggle API token; see the data chapter)",
               "sample": "pneumo data sample"}[source]
        raise FileNotFoundError(f"No {source} dataset at {folder}. Get it with: {how}")
    if profile.images_per_class is not None:
        from pneumo_lib.data.standin import subset_dataset

        return subset_dataset(folder, profile.images_per_class, seed=profile.seed, name=source)
    return folder


def ensure_sample() -> Path:
    """The 16 real Kaggle validation images (``chest_xray/val/{NORMAL,PNEUMONIA}``), fetched if absent.

    Fetching runs ``pip download`` once (PyPI must be reachable; see
    :mod:`pneumo_lib.data.sample`); an incomplete folder is replaced.
    """
    from pneumo_lib.data.layout import list_images
    from pneumo_lib.data.sample import SAMPLE_IMAGES, download_sample

    folder = paths.dataset_dir("sample")

    def complete() -> bool:
        try:
            return len(list_images(folder, splits=("val",))) == len(SAMPLE_IMAGES)
        except (FileNotFoundError, ValueError):
            return False

    if complete():
        return folder
    # One fetch at a time: a second process (the rehearsal beside the chapters) waits, then reuses it.
    with one_writer(folder):
        if complete():
            return folder
        return download_sample(folder.parent, force=True)

