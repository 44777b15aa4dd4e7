"""The sandbox one submission runs in: Debian's bubblewrap (``bwrap``) plus resource limits.

:func:`sandbox_command` wraps the grader's worker command (``python -m
pneumo_lib.assignments.runner ...``) so that student code runs

* as an unprivileged user with no capabilities;
* without network (``--unshare-net``), in its own pid, IPC and UTS namespaces
  (``--unshare-pid``: when the sandbox's init ends, the kernel kills every process left
  in it, detached or not; ``--die-with-parent`` ends it when the grader's handle does);
* on a read-only view of only what Python needs: ``/usr`` (and its ``/bin``, ``/lib``
  links), a few files of ``/etc``, the interpreter, the virtual environment, the library
  (with its instructor ``source/`` folder, which holds the solutions and hidden tests,
  covered by an empty folder), the dataset and model cache (read-only, so no submission
  can poison what the grader or the next student reads; the split-manifest cache is a
  private writable copy) and the one submitted notebook;
* with a private, size-limited, writable home and ``/tmp`` (``--tmpfs --size``), thrown away
  after the run, as working folder;
* with an environment built from scratch (``--clearenv`` and a whitelist): no ``KAGGLE_*``,
  no instructor ``HOME``, nothing else of the grader's environment;
* under ``prlimit`` limits on address space, CPU seconds, processes and file size.

Running as root, bwrap sets up the namespaces itself (privileged mode, no user namespace)
and ``setpriv`` switches to a fresh unprivileged uid (:data:`UID_RANGE`, one per sandbox)
before ``prlimit`` and the worker start: a user namespace created by root maps the sandbox
user to uid 0, which the kernel exempts from ``RLIMIT_NPROC``, and a uid shared by
sandboxes running at once would share their process limit. Run by anyone else, bwrap makes a user namespace (``--unshare-user``,
uid 65534 inside), the usual unprivileged set-up; the process limit then counts the
sandbox's processes only.

The wall-clock limit is the grader's: it kills the bwrap process (:func:`kill`), and the
namespaces take every process in them down with it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

#: The uid and gid student code sees (inside a user namespace).
NOBODY = 65534
#: Run as root, each sandbox gets its own unprivileged uid from this range (no passwd entry,
#: owning no file), so one sandbox's processes never count against another's process limit
#: and no two sandboxes can signal or ptrace each other.
UID_RANGE = (1_000_000, 2_000_000_000)
#: The sandbox's home and working folder (a private tmpfs).
HOME = "/home/student"
#: Where the submitted notebook appears inside the sandbox (read-only).
SUBMISSION_DIR = "/submission"
#: Variables copied from the grader's environment when set (everything else is dropped).
PASS_ENV = ("LANG", "LC_ALL", "TZ", "ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS", "PYTHONHASHSEED",
            "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
#: Files of /etc a Python process may want (no secrets: no shadow, no ssh, no credentials).
ETC_FILES = ("ld.so.cache", "ld.so.conf", "passwd", "group", "nsswitch.conf", "localtime", "fonts",
             "mime.types")


def WRITABLE_CACHES() -> list[Path]:  # noqa: N802 (a constant that depends on PNEUMO_HOME)
    """Caches notebooks write through the library (split manifests): writable copies inside."""
    from pneumo_lib import paths

    return [paths.pneumo_home() / "splits"]


class SandboxUnavailable(RuntimeError):
    """No sandbox can be made here (the message names the missing tool and how to get it)."""


def find_bwrap() -> str | None:
    """The ``bwrap`` executable, or None (``$PNEUMO_BWRAP`` overrides the search, ``""`` means none)."""
    env = os.environ.get("PNEUMO_BWRAP")
    if env is not None:
        return env or None
    return shutil.which("bwrap")


def check_available() -> str:
    """The bwrap path; :class:`SandboxUnavailable` when bwrap (or, as root, setpriv) is missing."""
    bwrap = find_bwrap()
    if bwrap is None:
        raise SandboxUnavailable(
            "The grader's sandbox needs bubblewrap ('bwrap' not found on PATH): install it "
            "(Debian/Ubuntu: apt-get install bubblewrap), or pass --unsafe-no-sandbox to run student "
            "code without a sandbox, as your own user, with access to your files.")
    for tool in ("prlimit",) + (("setpriv",) if os.geteuid() == 0 else ()):
        if shutil.which(tool) is None:
            raise SandboxUnavailable(f"The grader's sandbox needs '{tool}' (util-linux) and it was not found on PATH.")
    return bwrap


def _within(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def _read_only_roots(extra: list[Path]) -> list[Path]:
    """Folders student code may read: Python, the venv, the library, the data, ``extra``."""
    import pneumo_lib
    from pneumo_lib import paths

    wanted = [Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).resolve().parent.parent,
              Path(pneumo_lib.__file__).resolve().parent, paths.pneumo_home(), paths.data_root(), *extra]
    roots: list[Path] = []
    for p in sorted({Path(os.path.realpath(w)) for w in wanted}, key=lambda p: len(p.parts)):
        if p.exists() and not _within(p, roots) and not _within(p, [Path("/usr")]) and p != Path("/"):
            roots.append(p)
    return roots


def _ancestors(roots: list[Path]) -> list[Path]:
    seen: list[Path] = []
    for r in roots:
        for a in reversed(r.parents):
            if a != Path("/") and a not in seen and not _within(a, [Path("/usr")]):
                seen.append(a)
    return [a for a in seen if a not in roots]


def hidden_paths(sources: Path | None = None) -> list[Path]:
    """What is covered by an empty folder inside the sandbox: the instructor notebooks."""
    from pneumo_lib.assignments.notebooks import source_dir

    return [Path(os.path.realpath(p)) for p in {source_dir(), sources} if p is not None and Path(p).is_dir()]


def sandbox_command(command: list[str], *, notebook: Path, memory_mb: int, cpu_seconds: float,
                    processes: int, file_mb: int, tmp_mb: int, sources: Path | None = None,
                    hide: list[Path] = (), scratch: Path | None = None,
                    bwrap: str | None = None) -> tuple[list[str], list[str]]:
    """The full command line running ``command`` in the sandbox, and the worker's notebook path.

    Args:
        command: The worker command (``sys.executable -m ...``); ``{notebook}`` in it is
            replaced by the notebook's path inside the sandbox.
        notebook: The submitted notebook (a private copy: it is bound read-only).
        memory_mb, cpu_seconds, processes, file_mb: ``prlimit`` limits (address space in
            MiB, CPU seconds, processes and threads, largest file in MiB).
        tmp_mb: Size of the private home and of ``/tmp`` (MiB each).
        sources: Instructor notebooks folder, covered if the sandbox could see it.
        hide: More folders to cover if they lie in what the sandbox sees (the submissions).
        scratch: A private folder of the caller's: the library's small caches that notebooks
            write (:data:`WRITABLE_CACHES`) are copied there and bound writable over the
            originals, so the sandbox reads the cache and its writes are thrown away.
        bwrap: The bwrap executable (default: :func:`check_available`).
    """
    from pneumo_lib import paths

    bwrap = bwrap or check_available()
    root = os.geteuid() == 0
    inside = f"{SUBMISSION_DIR}/{notebook.name}"
    args = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
    if not root:
        args += ["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY), "--disable-userns"]
    args += ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        host = Path("/") / top
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args += ["--ro-bind", str(host), str(host)]
    args += ["--perms", "0755", "--dir", "/etc"]
    for name in ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    size = str(tmp_mb << 20)
    # The private /tmp comes before the read-only roots: a checkout or venv that lives below
    # /tmp (a CI clone, say) is then bound onto it instead of being hidden by it.
    args += ["--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
    roots = _read_only_roots([])
    for a in _ancestors(roots):
        if a != Path("/tmp"):
            args += ["--perms", "0755", "--dir", str(a)]
    for r in roots:
        args += ["--ro-bind", str(r), str(r)]
    for h in hidden_paths(sources) + [Path(os.path.realpath(p)) for p in hide if Path(p).is_dir()]:
        if _within(h, roots):
            args += ["--perms", "0555", "--tmpfs", str(h)]
    if scratch is not None:
        for index, cache in enumerate(WRITABLE_CACHES()):
            cache.mkdir(parents=True, exist_ok=True)
            if not _within(cache, roots):
                continue
            copy = Path(scratch) / f"cache-{index}"
            shutil.copytree(cache, copy, dirs_exist_ok=True)
            for folder, _, files in os.walk(copy):
                os.chmod(folder, 0o777)
                for name in files:
                    os.chmod(os.path.join(folder, name), 0o666)
            args += ["--bind", str(copy), str(cache)]
    args += ["--dev", "/dev", "--proc", "/proc",
             "--perms", "0755", "--dir", "/home",
             "--perms", "1777", "--size", size, "--tmpfs", HOME,
             "--perms", "0755", "--dir", SUBMISSION_DIR,
             "--ro-bind", str(notebook), inside, "--chdir", HOME, "--clearenv"]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": HOME, "USER": "student", "TMPDIR": "/tmp",
           "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp/matplotlib", "XDG_CACHE_HOME": "/tmp/cache",
           "KERAS_HOME": "/tmp/keras", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "TF_CPP_MIN_LOG_LEVEL": "3", "PNEUMO_SOLUTIONS": "off", "PNEUMO_SANDBOX": "bwrap",
           "PNEUMO_HOME": str(paths.pneumo_home()), "PNEUMO_DATA": str(paths.data_root())}
    env.update({k: os.environ[k] for k in PASS_ENV if k in os.environ})
    for key, value in sorted(env.items()):
        args += ["--setenv", key, value]
    if root:
        uid = secrets.randbelow(UID_RANGE[1] - UID_RANGE[0]) + UID_RANGE[0]
        args += ["--", "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                 "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    else:
        args += ["--"]
    args += limits_prefix(memory_mb, cpu_seconds, processes, file_mb)
    return args + [c.replace("{notebook}", inside) for c in command], [inside]


def limits_prefix(memory_mb: int, cpu_seconds: float, processes: int, file_mb: int) -> list[str]:
    """``prlimit`` with the four limits (soft = hard, so student code cannot raise them)."""
    cpu = max(1, int(cpu_seconds + 0.999))
    return ["prlimit", f"--as={memory_mb << 20}", f"--cpu={cpu}", f"--nproc={processes}",
            f"--fsize={file_mb << 20}", "--core=0", "--"]


def unsafe_env() -> dict[str, str]:
    """The environment of an unsandboxed worker: still a whitelist, never the grader's secrets."""
    from pneumo_lib import paths

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1",
           "TF_CPP_MIN_LOG_LEVEL": "3", "PNEUMO_SOLUTIONS": "off", "PNEUMO_SANDBOX": "none",
           "PNEUMO_HOME": str(paths.pneumo_home()), "PNEUMO_DATA": str(paths.data_root())}
    env.update({k: os.environ[k] for k in PASS_ENV if k in os.environ})
    return env


def kill(proc: subprocess.Popen) -> None:
    """End a sandbox and everything in it (its process group; the pid namespace follows)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    proc.wait()
