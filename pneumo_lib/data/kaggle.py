"""Download the real Kaggle dataset with the official ``kaggle`` client.

Credentials, in the order they are looked for: ``KAGGLE_API_TOKEN`` (a token or a
file holding one), ``KAGGLE_USERNAME`` + ``KAGGLE_KEY``, ``kaggle.json`` in the
client's config folder (``~/.kaggle`` or ``$KAGGLE_CONFIG_DIR``), an
``access_token`` file there, and on Colab the notebook's secrets of the same names.

The archive is downloaded and unpacked in a temporary folder next to the
destination; the ``chest_xray`` folder is moved into place only when its
per-split, per-class counts match the published ones, so a failed or partial
download never leaves a dataset that looks whole. Every failure ends in one
:class:`KaggleDownloadError` saying what to do; the client's own ``exit()`` calls
are caught, so a notebook kernel survives them.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from pneumo_lib import paths
from pneumo_lib.data.layout import CLASSES, SPLITS, is_image_name
from pneumo_lib.data.staging import replace_atomically

#: The Kaggle dataset (Kermany et al. 2018, CC BY 4.0).
KAGGLE_DATASET = "paultimothymooney/chest-xray-pneumonia"
#: Its published counts: ``{split: (NORMAL, PNEUMONIA)}`` (5,856 images).
KAGGLE_COUNTS: dict[str, tuple[int, int]] = {"train": (1341, 3875), "val": (8, 8), "test": (234, 390)}

_HELP = ("Create an API token at https://www.kaggle.com/settings (section API), then either "
         "set KAGGLE_API_TOKEN=<token> (or KAGGLE_USERNAME and KAGGLE_KEY), or save kaggle.json "
         "in ~/.kaggle/; on Colab add them as notebook secrets.")


class KaggleDownloadError(RuntimeError):
    """The Kaggle download failed; the message says why and what to do."""


def _colab_secrets() -> None:
    """On Colab, copy Kaggle secrets into the environment (no-op elsewhere)."""
    try:
        from google.colab import userdata  # type: ignore[import-not-found]
    except ImportError:
        return
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        if name in os.environ:
            continue
        try:
            value = userdata.get(name)
        except Exception:  # secret absent or access not granted
            continue
        if value:
            os.environ[name] = value


def credentials_source() -> str | None:
    """Where Kaggle credentials would come from (a short description), or None if nowhere."""
    _colab_secrets()
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    config_dirs = [os.environ.get("KAGGLE_CONFIG_DIR"), "~/.kaggle",
                   os.path.join(os.environ.get("XDG_CONFIG_HOME") or "~/.config", "kaggle")]
    for folder in filter(None, config_dirs):
        for name in ("kaggle.json", "access_token", "access_token.txt"):
            file = Path(folder).expanduser() / name
            if file.is_file() and file.stat().st_size > 0:
                return str(file)
    return None


def kaggle_api(args: list[str] | None = None):
    """A fresh, unauthenticated ``KaggleApi`` (imported quietly: the package prints on import).

    Args:
        args: Client arguments; ``["--local"]`` selects the loopback endpoint (tests).
    """
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from kaggle.api.kaggle_api_extended import KaggleApi
    api = KaggleApi()
    if args is not None:
        api.args = list(args)
    return api


def count_images(data_dir: Path) -> dict[str, tuple[int, int]]:
    """Images per split and class of a Kaggle-layout folder: ``{split: (NORMAL, PNEUMONIA)}``."""
    out = {}
    for split in SPLITS:
        out[split] = tuple(
            sum(1 for f in (data_dir / split / c).glob("*") if f.is_file() and is_image_name(f.name))
            if (data_dir / split / c).is_dir() else 0
            for c in CLASSES)
    return out


def _find_dataset(folder: Path, expected: dict[str, tuple[int, int]]) -> Path:
    """The ``chest_xray`` folder inside an unpacked archive whose counts match ``expected``."""
    candidates = [p.parent for p in sorted(folder.rglob("train"), key=lambda p: (len(p.parts), p))
                  if p.is_dir() and "__MACOSX" not in p.parts]  # shallowest first
    if not candidates:
        raise KaggleDownloadError(
            "The downloaded archive holds no train/ folder: it is not the chest X-ray dataset "
            "or it is incomplete. Nothing was installed; run the download again.")
    found = {}
    for c in candidates:
        found[c] = count_images(c)
        if found[c] == expected:
            return c
    best, counts = next(iter(found.items()))
    raise KaggleDownloadError(
        f"The downloaded dataset is incomplete: counts {counts} in {best.relative_to(folder)} "
        f"differ from the published {expected}. Nothing was installed; run the download again.")


def download_kaggle(out: str | os.PathLike | None = None, *, force: bool = False,
                    dataset: str = KAGGLE_DATASET,
                    expected: dict[str, tuple[int, int]] = KAGGLE_COUNTS,
                    retries: int = 5, quiet: bool = True, api=None) -> Path:
    """Download the Kaggle dataset and install it as ``<out>/chest_xray``.

    Args:
        out: Folder to hold ``chest_xray/``; default ``paths.dataset_dir("kaggle").parent``.
        force: Replace an existing dataset (only once the new one is complete).
        dataset: ``owner/slug`` of the Kaggle dataset.
        expected: Counts the unpacked dataset must have, ``{split: (NORMAL, PNEUMONIA)}``.
        retries: How often the client retries an interrupted transfer.
        quiet: Hide the client's progress bar.
        api: A ``KaggleApi`` to use (default :func:`kaggle_api`); tests pass one
            pointed at a loopback server.

    Returns:
        The installed ``chest_xray`` folder.

    Raises:
        FileExistsError: The dataset exists and ``force`` is False.
        KaggleDownloadError: No or wrong credentials, network failure, a corrupt or
            truncated archive, or wrong counts; nothing is installed then.
    """
    root = Path(out).expanduser().absolute() if out else paths.dataset_dir("kaggle").parent
    target = root / "chest_xray"
    if target.exists() and not force:
        raise FileExistsError(f"{target} already exists; pass force=True (or --force) to replace it.")
    if credentials_source() is None:
        raise KaggleDownloadError(f"No Kaggle credentials found. {_HELP}")
    created = [d for d in (root, *root.parents) if not d.exists()]  # removed again on failure
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".kaggle-partial-", dir=root))
    try:
        archive = _fetch(api or kaggle_api(), dataset, tmp, retries, quiet)
        unpacked = tmp / "unpacked"
        _unzip(archive, unpacked)
        archive.unlink()
        found = _find_dataset(unpacked, expected)
        with replace_atomically(target) as staged:
            for split in SPLITS:  # only the split folders (Kaggle's zip nests a second copy)
                shutil.move(str(found / split), str(staged / split))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # deepest first: leave no empty folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _fetch(api, dataset: str, folder: Path, retries: int, quiet: bool) -> Path:
    """Run the client's download into ``folder``; returns the archive path."""
    import requests

    api.download_file = functools.partial(api.download_file, max_retries=retries)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
            api.authenticate()
            api.dataset_download_files(dataset, path=str(folder), force=True, quiet=quiet, unzip=False)
    except SystemExit:
        raise KaggleDownloadError(f"The Kaggle client found no usable credentials. {_HELP}") from None
    except requests.HTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status in (401, 403):
            raise KaggleDownloadError(
                f"Kaggle rejected the credentials (HTTP {status}). Check the token or "
                f"username/key (they may be expired or mistyped). {_HELP}") from None
        if status == 404:
            raise KaggleDownloadError(f"Kaggle has no dataset {dataset!r} (HTTP 404).") from None
        raise KaggleDownloadError(f"Kaggle answered HTTP {status}: {err}. Try again later.") from None
    except (requests.ConnectionError, requests.Timeout, OSError) as err:
        raise KaggleDownloadError(
            f"Could not reach Kaggle ({type(err).__name__}): check the network connection "
            "and try again; nothing was installed.") from None
    except ValueError as err:  # the client's size check of a short transfer
        raise KaggleDownloadError(f"The download was cut short ({err}); run it again.") from None
    archives = sorted(folder.glob("*.zip"))
    if not archives:
        raise KaggleDownloadError("The Kaggle client finished without writing an archive; run it again.")
    return archives[0]


def _unzip(archive: Path, folder: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as z:
            bad = z.testzip()
            if bad is not None:
                raise zipfile.BadZipFile(f"CRC error in {bad}")
            for name in z.namelist():
                if name.startswith("/") or ".." in Path(name).parts:
                    raise zipfile.BadZipFile(f"unsafe path {name!r}")
            z.extractall(folder)
    except (zipfile.BadZipFile, EOFError) as err:
        raise KaggleDownloadError(
            f"The downloaded archive is truncated or corrupt ({err}); nothing was installed. "
            "Run the download again.") from None
