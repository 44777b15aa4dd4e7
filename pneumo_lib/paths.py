"""The one place that decides where data, trained models and caches live.

Everything sits below a home folder:

* ``$PNEUMO_HOME`` if set, else ``$XDG_CACHE_HOME/pneumo``, else ``~/.cache/pneumo``.
* Datasets: ``$PNEUMO_DATA`` if set, else ``<home>/data``. Each source gets its own
  folder in the Kaggle layout: ``<data>/<source>/chest_xray/{train,val,test}/...``.
* Trained models cached for the chapters: ``<home>/models``.
* ``$PNEUMO_KAGGLE_DIR``, when set, is the ``chest_xray`` folder of the ``kaggle`` source
  instead of ``<data>/kaggle/chest_xray``. ``pneumo book run --rehearse`` sets it for its
  kernels to a Kaggle-shaped stand-in under ``<home>/rehearsal`` when no real download
  exists, so the stand-in never sits where a real download belongs.

The Makefile points ``PNEUMO_HOME`` into the checkout (``.pneumo/``) so that a
book build leaves nothing outside the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The sources a dataset can come from.
SOURCES = ("phantom", "kaggle", "sample")
#: Environment variable: the ``chest_xray`` folder used as the ``kaggle`` source when set.
KAGGLE_DIR_ENV = "PNEUMO_KAGGLE_DIR"


def pneumo_home() -> Path:
    """Root folder for everything the library writes (absolute path)."""
    env = os.environ.get("PNEUMO_HOME")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "pneumo").resolve()


def data_root() -> Path:
    """Folder holding one sub-folder per data source (absolute path)."""
    env = os.environ.get("PNEUMO_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return pneumo_home() / "data"


def dataset_dir(source: str) -> Path:
    """The ``chest_xray`` folder (Kaggle layout) of one source.

    ``kaggle`` is ``$PNEUMO_KAGGLE_DIR`` when that is set (the rehearsal's stand-in).

    Args:
        source: One of :data:`SOURCES`.

    Raises:
        ValueError: Unknown source, naming the valid ones.
    """
    if source not in SOURCES:
        raise ValueError(f"Unknown data source {source!r}. Valid sources: {', '.join(SOURCES)}.")
    override = os.environ.get(KAGGLE_DIR_ENV) if source == "kaggle" else None
    if override:
        return Path(override).expanduser().resolve()
    return data_root() / source / "chest_xray"


def model_cache_dir() -> Path:
    """Folder where chapters cache the models they train (absolute path)."""
    return pneumo_home() / "models"


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as the book prints it: without the folders of the machine that ran it.

    Paths below the data root or the home become ``$PNEUMO_DATA/...`` / ``$PNEUMO_HOME/...``
    (the data root counts as ``$PNEUMO_HOME/data`` when it lies there), paths below the
    user's home folder ``~/...``; any other path is returned as given.

    Args:
        path: A file or folder path (need not exist).

    Returns:
        The path as text, with forward slashes below the named root.
    """
    target = Path(path).expanduser().absolute()
    roots = [(pneumo_home(), "$PNEUMO_HOME"), (data_root(), "$PNEUMO_DATA"), (Path.home().absolute(), "~")]
    for root, name in roots:
        try:
            rest = target.relative_to(root)
        except ValueError:
            continue
        return name if not rest.parts else f"{name}/{rest.as_posix()}"
    return str(path)



class NotAFileError(ValueError):
    """A folder (or a device, socket, pipe) was given where a file is expected; the message says which."""


def check_file(path: str | os.PathLike[str], what: str = "file", *, suffix: str | None = None,
               option: str | None = None) -> Path:
    """Check that ``path`` is an existing regular file; return it as a :class:`Path`.

    Commands that take a file (a model, a weights file, an output file) call this first,
    so a folder given by mistake is called a folder, with what is expected instead,
    rather than reported as missing.

    Args:
        path: The path given by the user.
        what: What the file is, for the message ("model file", "weights file", ...).
        suffix: The expected suffix (e.g. ``".keras"``): the folder's files with it are
            suggested.
        option: The command-line option that took ``path`` (e.g. ``"--model"``), named in
            the message.

    Raises:
        FileNotFoundError: Nothing exists at ``path``.
        NotAFileError: ``path`` is a folder or not a regular file (the message names it
            and what is expected).
    """
    path = Path(path).expanduser()
    check_not_folder(path, what, suffix=suffix, option=option)
    given = f"{option} {path}" if option else str(path)
    if not path.exists():
        raise FileNotFoundError(f"{what[0].upper()}{what[1:]} {given} does not exist.")
    if not path.is_file():
        raise NotAFileError(f"{given} is not a regular file (a device, socket or pipe?); expected a {what}.")
    return path


def check_not_folder(path: str | os.PathLike[str], what: str = "file", *, suffix: str | None = None,
                     option: str | None = None) -> Path:
    """Refuse a folder where a file (to read or to write) is expected; return ``path`` as a :class:`Path`.

    Raises:
        NotAFileError: ``path`` is a folder; the message names it, the file expected and,
            with ``suffix``, the folder's files that have it.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        given = f"{option} {path}" if option else str(path)
        expected = f"a {suffix} {what}" if suffix else f"a {what}"
        found = sorted(p.name for p in path.glob(f"*{suffix}") if p.is_file())[:3] if suffix else []
        hint = f" (it holds {', '.join(found)}: pass e.g. {path / found[0]})" if found else ""
        raise NotAFileError(f"{given} is a folder, not a {what}: expected {expected}{hint}.")
    return path


def partial_path(target: str | os.PathLike[str]) -> Path:
    """A hidden temporary file beside ``target`` for writing it whole, then ``os.replace`` onto it.

    The name is unique to this process and call (``.partial-<pid>-<random>-<name>``; it ends as
    ``target``'s does, which Keras requires of ``.weights.h5`` files), so two
    processes (or threads) writing the same cache file at once - a chapter and the rehearsal,
    two notebooks open side by side - each finish their own copy and the last rename wins;
    a fixed temporary name would let one writer truncate or move the other's half-written
    file. Nothing is created; the caller writes, renames, and removes it on failure.
    """
    import secrets

    target = Path(target)
    return target.with_name(f".partial-{os.getpid()}-{secrets.token_hex(4)}-{target.name}")
