"""The upload-and-explain web app: Voila serving one notebook of the explorer.

``pneumo serve`` calls :func:`serve`, which

1. resolves the model: a ``.keras`` file given with ``--model``, or the quick-profile
   scratch CNN from the model cache, trained first when the cache is empty
   (:func:`default_model`);
2. hands the model's path and a sentence describing it to the kernels through the
   environment variables :data:`MODEL_ENV` and :data:`NOTE_ENV` (the app notebook reads
   them with :func:`pneumo_lib.widgets.app_from_environment`);
3. runs Voila in this process on ``explorer_app.ipynb`` (shipped as package data, so
   the command works from a plain ``pip install``), bound to 127.0.0.1 by default.

The page is the explorer's upload view (:class:`pneumo_lib.widgets.AppView`): one
interface to maintain for the chapter and the app.

Every visit runs its own kernel (about 0.8 GB with TensorFlow and the model), so the
server frees what its visitors take:

* **closing the tab ends the kernel**: the page's ``beforeunload`` beacon posts to
  ``/voila/api/shutdown/<id>`` with the ``_xsrf`` value it reads from the page's cookie;
  Voila's page handler never set that cookie, so every shutdown was refused (403) and the
  kernel lived on. The app's page handler sets it (:func:`voila_class`);
* **idle kernels end** after :data:`DEFAULT_IDLE_SECONDS` without activity, connected or
  not (``MappingKernelManager.cull_idle_timeout`` / ``cull_interval`` / ``cull_connected``),
  which also frees the kernels of tabs that vanished without a beacon;
* **at most ``max_kernels`` run at once** (default :func:`default_max_kernels`: the
  machine's memory over :data:`KERNEL_MB`); a visitor beyond that gets HTTP 503 and a
  readable "busy, try again" page (:data:`BUSY_PAGE`) instead of a kernel.
"""

from __future__ import annotations

import contextvars
import errno
import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

#: Environment variable holding the absolute path of the ``.keras`` model the app serves.
MODEL_ENV = "PNEUMO_APP_MODEL"
#: Environment variable holding one sentence that says on the page which model answers.
NOTE_ENV = "PNEUMO_APP_MODEL_NOTE"
#: The notebook Voila serves.
APP_NOTEBOOK = Path(__file__).with_name("explorer_app.ipynb")
#: The architecture served without ``--model`` (the quick profile's scratch CNN).
DEFAULT_MODEL = "paper_cnn"
#: Default port (Voila's own default).
DEFAULT_PORT = 8866
#: Largest websocket message the server accepts: above the upload limit, so an
#: oversized upload reaches the kernel and gets a clear message instead of a dropped
#: connection (tornado's default is 10 MiB).
WEBSOCKET_MAX_BYTES = 64 * 1024 * 1024
#: Memory one visitor's kernel takes, in MiB (measured: about 0.8 GB), for the default cap.
KERNEL_MB = 900
#: Seconds without activity after which a visitor's kernel is ended.
DEFAULT_IDLE_SECONDS = 600
#: What a visitor beyond the cap sees (HTTP 503); ``{limit}`` and ``{minutes}`` are filled in.
BUSY_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Busy: please try again</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto; line-height: 1.5">
<h1>The app is busy, please try again in a minute</h1>
<p>Every visitor gets their own model process, and all {limit} of them are in use right now.
A place frees up when another visitor closes their tab, or after {minutes} without activity.</p>
<p><a href="">Try again</a></p>
</body></html>
"""


def _memory_bytes() -> int | None:
    """This machine's memory, or the container's memory limit when lower."""
    total = None
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        pass
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and (total is None or int(text) < total):
            total = int(text)
    return total


def default_max_kernels(memory_bytes: int | None = None) -> int:
    """How many visitors' kernels fit: memory / :data:`KERNEL_MB`, at least 1."""
    memory = _memory_bytes() if memory_bytes is None else memory_bytes
    if not memory:
        return 1
    return max(1, int(memory // (KERNEL_MB << 20)))


def voila_config(max_kernels: int, idle_seconds: float):
    """The traitlets config of the app's Voila: message size, idle culling, the kernel cap."""
    from traitlets.config import Config

    if max_kernels < 1:
        raise ValueError(f"--max-kernels must be at least 1, got {max_kernels}.")
    if idle_seconds <= 0:
        raise ValueError(f"--idle-timeout must be positive, got {idle_seconds:g}.")
    config = Config()
    config.Voila.tornado_settings = {"websocket_max_message_size": WEBSOCKET_MAX_BYTES,
                                     "pneumo_max_kernels": int(max_kernels),
                                     "pneumo_idle_seconds": float(idle_seconds)}
    config.MappingKernelManager.cull_idle_timeout = int(max(1, round(idle_seconds)))
    config.MappingKernelManager.cull_interval = int(max(1, min(60, round(idle_seconds / 4))))
    config.MappingKernelManager.cull_connected = True  # an open but idle tab ends too
    config.MappingKernelManager.cull_busy = False
    return config


_reservation: contextvars.ContextVar = contextvars.ContextVar("pneumo_reservation", default=None)


def voila_class():
    """Voila with the app's page handler: sets the ``_xsrf`` cookie, caps the kernels.

    The handler counts running kernels plus visits still starting theirs (single-threaded
    tornado, so the check and the reservation cannot interleave), and answers a visit over
    the cap with :data:`BUSY_PAGE` and HTTP 503 (``Retry-After: 60``).
    """
    from jupyter_core.utils import ensure_async
    from voila.app import Voila
    from voila.tornado.handler import TornadoVoilaHandler

    class AppPageHandler(TornadoVoilaHandler):
        reservations: list = []

        async def get(self, path=None):
            if path:  # a file next to the notebook: Voila redirects, no kernel
                return await super().get(path)
            limit = self.settings.get("pneumo_max_kernels")
            running = set(self.kernel_manager.list_kernel_ids())
            starting = sum(1 for r in AppPageHandler.reservations if not r["started"])
            if limit and len(running) + starting >= limit:
                idle = self.settings.get("pneumo_idle_seconds", DEFAULT_IDLE_SECONDS)
                self.log.warning("pneumo serve: busy (%d of %d kernels); answered 503", len(running) + starting, limit)
                self.set_status(503)
                self.set_header("Retry-After", "60")
                self.set_header("Content-Type", "text/html; charset=utf-8")
                self.set_header("Cache-Control", "no-store")
                minutes = f"{idle / 60:g} minutes" if idle >= 60 else f"{idle:g} seconds"
                self.finish(BUSY_PAGE.format(limit=limit, minutes=minutes))
                return
            self.xsrf_token  # sets the _xsrf cookie the page's shutdown beacon sends back
            reservation = {"started": False}
            AppPageHandler.reservations.append(reservation)
            token = _reservation.set(reservation)
            try:
                return await super().get(path)
            finally:
                _reservation.reset(token)
                AppPageHandler.reservations.remove(reservation)

    class AppVoila(Voila):
        def init_settings(self):
            settings = super().init_settings()
            manager = self.kernel_manager
            start = manager.start_kernel

            async def start_kernel(*args, **kwargs):
                kernel_id = await ensure_async(start(*args, **kwargs))
                reservation = _reservation.get()
                if reservation is not None:
                    reservation["started"] = True
                return kernel_id

            manager.start_kernel = start_kernel
            return settings

        def init_handlers(self):
            return [(h[0], AppPageHandler, *h[2:]) if len(h) > 1 and h[1] is TornadoVoilaHandler else h
                    for h in super().init_handlers()]

    return AppVoila


def check_model_path(path: str | os.PathLike[str]) -> Path:
    """The absolute path of a ``.keras`` model file given on the command line.

    Raises:
        FileNotFoundError: No such file.
        ValueError: A folder (named as one), or a file that is not a ``.keras`` archive (by name).
    """
    from pneumo_lib.paths import check_not_folder

    check_not_folder(path, "model file", suffix=".keras", option="--model")  # a folder is not "no such file"
    model_path = Path(path).expanduser().resolve()
    if not model_path.is_file():
        raise FileNotFoundError(f"--model {path}: no such file.")
    if model_path.suffix != ".keras":
        raise ValueError(f"--model {path}: expected a Keras 3 '.keras' file, got '{model_path.suffix}'.")
    return model_path


def _check_loadable(model_path: Path) -> None:
    """Load the model once here, so a bad file fails the command, not every visitor's page.

    Raises:
        pneumo_lib.training.ModelFileError: Corrupted, truncated or unsafe file.
        ValueError: The model does not take images ``(N, S, S, C)``.
    """
    from pneumo_lib import training

    shape = training.load_model(model_path).input_shape
    if len(shape) != 4 or shape[1] != shape[2]:
        raise ValueError(f"--model {model_path.name}: expected a model taking square images "
                         f"(N, S, S, C), but its input is {shape}.")


def default_model(profile: str = "quick") -> tuple[Path, str]:
    """The profile's scratch CNN (:data:`DEFAULT_MODEL`) from the model cache, trained first if absent.

    Uses :func:`pneumo_lib.experiments.cached_training`, so the app serves exactly the
    model the chapters use.

    Returns:
        The absolute path of the cached ``.keras`` file and one sentence for the page
        saying which model this is, what it was trained on and whether it was trained now.
    """
    from pneumo_lib import experiments

    print(f"pneumo serve: getting the {profile}-profile {DEFAULT_MODEL} (trained first if the "
          "model cache is empty; about a minute on a laptop CPU)...", flush=True)
    cached = experiments.cached_training(DEFAULT_MODEL, profile)
    how = "trained just now because the model cache was empty" if cached.trained_now else (
        "loaded from the model cache")
    source = cached.card.get("data", {}).get("source", "phantom")
    note = (
        f"Model: the {profile}-profile scratch CNN ({DEFAULT_MODEL}, {how}), trained on the "
        f"{source} data set. It is a teaching model, not a medical device.")
    return cached.path.resolve(), note


def decision_threshold(model_path: str | os.PathLike[str]) -> float:
    """The decision threshold stored in a model's card (chosen on validation), else 0.5.

    :func:`pneumo_lib.decision.threshold_from_card` of the file's card: the threshold
    :func:`pneumo_lib.training.load_model` attaches to the loaded model, so the page, the
    explorer and ``pneumo explain`` answer alike.
    """
    from pneumo_lib import decision, training

    return decision.threshold_from_card(training.read_card(model_path))


def check_port(host: str, port: int) -> None:
    """Fail early, and clearly, when the server could not listen on ``host:port``.

    Raises:
        ValueError: Port out of range, already in use, or an address this machine lacks.
    """
    if not 0 < int(port) < 65536:
        raise ValueError(f"--port must be between 1 and 65535, got {port}.")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, int(port)))
    except OSError as err:
        what = "is already in use" if err.errno == errno.EADDRINUSE else f"cannot be bound ({err.strerror})"
        raise ValueError(f"Port {port} on {host} {what}; choose another with --port or --host.") from None


def _kernelspec_dir() -> Path:
    """A temporary Jupyter data folder whose ``python3`` kernel is this interpreter.

    Prepended to ``JUPYTER_PATH``, it makes Voila's kernels run on the Python that has
    ``pneumo_lib`` installed even if the user has another ``python3`` kernel registered.
    """
    folder = Path(tempfile.mkdtemp(prefix="pneumo-serve-"))
    spec_dir = folder / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (pneumo serve)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    return folder


def voila_argv(host: str, port: int) -> list[str]:
    """Voila's command-line arguments for the app (no browser, no port hopping)."""
    return [
        str(APP_NOTEBOOK),
        "--no-browser",
        f"--Voila.ip={host}",
        f"--port={port}",
        "--Voila.port_retries=0",
        "--theme=light",
        "--strip_sources=True",
        "--show_tracebacks=False",
    ]


def serve(model: str | os.PathLike[str] | None = None, *, host: str = "127.0.0.1",
          port: int = DEFAULT_PORT, max_kernels: int | None = None,
          idle_seconds: float = DEFAULT_IDLE_SECONDS) -> None:
    """Serve the app until interrupted (Ctrl-C or SIGTERM); blocks.

    Args:
        model: A ``.keras`` file, or ``None`` for :func:`default_model`.
        host: Address to bind; the default serves this machine only.
        port: TCP port, 1-65535; the server fails rather than pick another one.
        max_kernels: Visitors' kernels running at once (default :func:`default_max_kernels`);
            one visitor more gets the busy page.
        idle_seconds: A kernel without activity for this long is ended.

    Raises:
        ValueError: Bad or busy port, or a model file that is not a loadable image classifier.
        FileNotFoundError: The model file does not exist.
    """
    check_port(host, port)
    limit = default_max_kernels() if max_kernels is None else int(max_kernels)
    config = voila_config(limit, idle_seconds)
    if model is not None:
        model_path = check_model_path(model)
        _check_loadable(model_path)
        note = f"Model: {model_path.name}, given with --model. It is not a medical device."
    else:
        model_path, note = default_model()
    os.environ[MODEL_ENV] = str(model_path)
    os.environ[NOTE_ENV] = note
    kernels = _kernelspec_dir()
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        p for p in (str(kernels), os.environ.get("JUPYTER_PATH", "")) if p
    )
    print(f"pneumo serve: {note}", flush=True)
    print(f"pneumo serve: model file {model_path}", flush=True)
    print(f"pneumo serve: at most {limit} visitors at once (one kernel each, about {KERNEL_MB} MB); "
          f"a kernel ends when its tab closes or after {idle_seconds:g} s idle", flush=True)
    print(f"pneumo serve: open http://{host}:{port}/ (Ctrl-C stops the server)", flush=True)
    voila = voila_class()
    try:
        voila.launch_instance(argv=voila_argv(host, int(port)), config=config)
    finally:
        voila.clear_instance()
        shutil.rmtree(kernels, ignore_errors=True)
