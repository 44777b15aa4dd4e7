"""Write a dataset folder so that it appears complete or not at all."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def replace_atomically(target: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``target`` that becomes ``target`` when the block succeeds.

    Write everything into the yielded folder. On success an existing ``target`` is
    moved aside, the new folder renamed into place, and the old one deleted (so a
    failure at any point leaves either the old or the new dataset, never a mix).
    On any exception, including ``KeyboardInterrupt``, the temporary folder is
    removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-partial-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a dataset is for everyone who may read here
    try:
        yield tmp
        old = target.with_name(f".{target.name}-old") if target.exists() else None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        try:
            tmp.rename(target)
        except BaseException:
            if old is not None:
                old.rename(target)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def one_writer(target: str | Path) -> Iterator[None]:
    """Hold the lock of ``target`` (``.<name>.lock`` beside it) for the block: one writer at a time.

    For what is written on first use - a phantom, a derived copy, the real sample images, a
    model cache entry while it trains: a second process (another notebook, a chapter run
    beside this one, the rehearsal beside the chapters) waits here, and should look again
    inside the block whether ``target`` is now there before writing it. The lock is released when the block ends or the process dies; the lock file stays
    (empty) and is reused.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
