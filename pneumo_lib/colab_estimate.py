"""An estimate (not a measurement) of how long a full-profile run of each chapter takes on a Colab T4.

A rehearsal (``pneumo book run --profile full --rehearse``) runs every chapter on CPU with
the full profile's code paths but small sizes. This module turns what it measured into an
estimate for the real full profile on Google Colab with an NVIDIA T4:

* **Which trainings a chapter runs.** :func:`snapshot_cards` lists the model cards in the
  model cache before and after each chapter; :func:`new_trainings` picks the cards that
  appeared or changed (models loaded from the cache cost nothing). Each card becomes a
  :class:`Training` (:meth:`Training.from_card`).
* **The full profile's work of a training.** Its share of the training split (the card's
  ``data.train_images`` over ``data.counts["train"]``) of the full profile's training images
  (:data:`FULL_SPLIT_COUNTS`, from Kaggle's published counts split as
  :func:`pneumo_lib.data.make_splits` splits them), times the full profile's epochs of each
  phase the training ran (25 for training, 10 more for fine-tuning), at 224 px.
* **T4 throughput.** The CPU's measured training throughput of that architecture at 224 px
  (:func:`measure_train_throughput`, which ``benchmarks/train_throughput.py`` prints per model) times
  :func:`t4_ratio`: an assumed sustained T4 rate (:data:`DEFAULT_T4_TFLOPS`, overridable) over
  this CPU's measured float32 matmul rate (:func:`measure_matmul_gflops`).
* **What a GPU does not speed up.** At 224 px the full training split is too large for the
  pipeline's in-memory cache (:func:`is_cached`), so every epoch decodes its JPEGs again on
  Colab's 2 vCPUs (rate measured here on Kaggle-size images, :func:`measure_decode_rate`);
  an epoch takes the longer of GPU steps and decoding (the pipeline overlaps them). Cached
  splits (validation, test, small training subsets) are decoded once. The chapter's
  non-training time in the rehearsal (kernel start, imports, evaluation, CAM, figures) is
  added as it was measured: a lower bound for those parts, which run at full counts on Colab.

Trainings are attributed to the chapter that wrote their model card; a model a chapter loads
from a warm cache costs it nothing, so estimate from a rehearsal with an empty model cache.

Early stopping can end a phase before its last epoch, so the training part is an upper bound.
Everything here is an estimate with stated assumptions (:func:`assumptions_line`), never a
measurement on a T4.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from pneumo_lib.data.kaggle import KAGGLE_COUNTS
from pneumo_lib.profiles import PROFILES, Profile

#: NVIDIA T4 datasheet peaks (TFLOPS): FP32, and FP16 on the tensor cores.
T4_PEAK_FP32_TFLOPS = 8.1
T4_PEAK_FP16_TENSOR_TFLOPS = 65.0
#: The sustained T4 rate assumed for training these networks (TFLOPS, > 0): half the FP32 peak.
#: Mixed precision (the trainer's choice on a GPU) can do better on the tensor cores, but
#: input pipelines, small layers and kernel launches keep convnet training far below 65.
DEFAULT_T4_TFLOPS = 4.0
#: Colab's CPU cores for decoding JPEGs (a standard Colab GPU runtime has 2 vCPUs).
COLAB_CPUS = 2
#: The validation share :func:`pneumo_lib.data.make_splits` uses by default.
VAL_FRACTION = 0.15
#: Image side of the full profile (px).
FULL_IMAGE_SIZE = PROFILES["full"].image_size


class EstimateError(ValueError):
    """Input to the estimate is missing or out of range; the message says which and why."""


def full_split_counts(counts: Mapping[str, tuple[int, int]] = KAGGLE_COUNTS,
                      val_fraction: float = VAL_FRACTION) -> dict[str, int]:
    """Images per split of the full profile's split manifest (both classes together).

    :func:`pneumo_lib.data.make_splits` merges Kaggle's train and val folders and moves
    whole patients of each class into validation until they reach ``val_fraction`` of that
    class; ignoring the overshoot of the last patient, that is ``ceil(val_fraction * n)``
    per class. Kaggle's counts give train 4,446, val 786, test 624 (of 5,856).

    Args:
        counts: ``{split: (NORMAL, PNEUMONIA)}`` of the Kaggle folders.
        val_fraction: Validation share per class, in (0, 1).

    Raises:
        EstimateError: ``val_fraction`` outside (0, 1) or counts without train/val/test.
    """
    if not 0 < val_fraction < 1:
        raise EstimateError(f"val_fraction must be between 0 and 1, got {val_fraction}.")
    missing = sorted({"train", "val", "test"} - set(counts))
    if missing:
        raise EstimateError(f"counts need the splits train, val and test; missing {', '.join(missing)}.")
    train = val = 0
    for label in range(2):
        pool = counts["train"][label] + counts["val"][label]
        moved = math.ceil(val_fraction * pool)
        val += moved
        train += pool - moved
    return {"train": train, "val": val, "test": sum(counts["test"])}


#: ``{"train": 4446, "val": 786, "test": 624}``: the full profile's splits (:func:`full_split_counts`).
FULL_SPLIT_COUNTS: dict[str, int] = full_split_counts()


def _field(card: Mapping[str, Any], dotted: str, where: str) -> Any:
    value: Any = card
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise EstimateError(f"The model card {where} has no field {dotted!r}; the estimate needs it "
                                "(cards written by pneumo_lib.training for a finished training have it).")
        value = value[part]
    return value


@dataclass(frozen=True)
class Training:
    """One training a chapter ran in the rehearsal, as its model card records it.

    Attributes:
        architecture: Model name for :func:`pneumo_lib.models.build_model`, e.g. ``"xception"``.
        train_fraction: Share of the split's training images it trained on, in (0, 1].
        phases: Phases it ran, in order: ``"train"`` and possibly ``"fine-tune"``.
        whole_network: True when the first phase trains every layer (scratch CNNs are keyed
            without it; a backbone with ``train_backbone``).
        rehearsal_seconds: Wall time of its training steps in the rehearsal (s, >= 0).
        card: Where the card was (for messages).
    """

    architecture: str
    train_fraction: float
    phases: tuple[str, ...]
    whole_network: bool = False
    rehearsal_seconds: float = 0.0
    card: str = ""

    def __post_init__(self):
        if not 0 < self.train_fraction <= 1:
            raise EstimateError(f"train_fraction of {self.card or self.architecture} must be in (0, 1], "
                                f"got {self.train_fraction}.")
        unknown = sorted(set(self.phases) - {"train", "fine-tune"})
        if not self.phases or unknown:
            raise EstimateError(f"phases of {self.card or self.architecture} must be 'train' and optionally "
                                f"'fine-tune', got {list(self.phases)}.")
        if self.rehearsal_seconds < 0:
            raise EstimateError(f"rehearsal_seconds must be >= 0, got {self.rehearsal_seconds}.")

    @classmethod
    def from_card(cls, card: Mapping[str, Any], where: str = "") -> "Training":
        """The training a model card describes.

        Needs ``architecture``, ``data.train_images``, ``data.counts.train`` (``{class: n}``),
        ``history.phase`` (one entry per epoch run) and ``training.train_seconds``.

        Raises:
            EstimateError: A field is missing (named) or out of range.
        """
        where = where or "given"
        arch = _field(card, "architecture", where)
        n = _field(card, "data.train_images", where)
        pool = _field(card, "data.counts.train", where)
        phases = _field(card, "history.phase", where)
        seconds = _field(card, "training.train_seconds", where)
        total = sum(int(v) for v in pool.values()) if isinstance(pool, Mapping) else 0
        if total <= 0 or not isinstance(n, (int, float)) or n <= 0:
            raise EstimateError(f"The model card {where} records {n!r} training images of a training split "
                                f"of {total}; both must be positive.")
        ordered = tuple(dict.fromkeys(str(p) for p in phases))
        return cls(str(arch), min(1.0, float(n) / total), ordered, bool(card.get("train_backbone")),
                   float(seconds), where)

    def throughput_key(self, phase: str) -> str:
        """Key of :attr:`CpuMeasurements.images_per_second` for one phase.

        ``"<architecture>"`` for a first phase on a frozen backbone (or a scratch CNN),
        ``"<architecture>+whole"`` when every layer trains (``whole_network``, and fine-tuning,
        which unfreezes backbone blocks: an upper bound on its cost).
        """
        return f"{self.architecture}+whole" if (phase == "fine-tune" or self.whole_network) else self.architecture

    def full_epochs(self, profile: Profile = PROFILES["full"]) -> dict[str, int]:
        """Epochs of each phase in a full-profile run (the profile's maxima)."""
        return {p: profile.epochs if p == "train" else profile.fine_tune_epochs for p in self.phases}

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly fields."""
        return {"architecture": self.architecture, "train_fraction": self.train_fraction,
                "phases": list(self.phases), "whole_network": self.whole_network,
                "rehearsal_seconds": self.rehearsal_seconds, "card": self.card}


@dataclass(frozen=True)
class ChapterRecord:
    """What a rehearsal measured of one chapter.

    Attributes:
        name: The chapter's stem.
        seconds: Its wall time in the rehearsal (s, >= 0), kernel start included.
        trainings: The trainings it ran (models it loaded from the cache are not here).
    """

    name: str
    seconds: float
    trainings: tuple[Training, ...] = ()

    def __post_init__(self):
        if self.seconds < 0:
            raise EstimateError(f"seconds of chapter {self.name} must be >= 0, got {self.seconds}.")

    @property
    def non_training_seconds(self) -> float:
        """Wall time minus its trainings' training steps (s, >= 0)."""
        return max(0.0, self.seconds - sum(t.rehearsal_seconds for t in self.trainings))

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly fields (read back with :meth:`from_dict`)."""
        return {"name": self.name, "seconds": self.seconds, "trainings": [t.as_dict() for t in self.trainings]}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ChapterRecord":
        """The record :meth:`as_dict` wrote.

        Raises:
            EstimateError: A field is missing.
        """
        try:
            trainings = tuple(Training(t["architecture"], float(t["train_fraction"]), tuple(t["phases"]),
                                       bool(t.get("whole_network")), float(t.get("rehearsal_seconds", 0.0)),
                                       str(t.get("card", ""))) for t in values.get("trainings", []))
            return cls(str(values["name"]), float(values["seconds"]), trainings)
        except KeyError as err:
            raise EstimateError(f"A chapter record lacks the field {err.args[0]!r}.") from None


def snapshot_cards(folder: str | os.PathLike[str]) -> dict[str, tuple[int, int]]:
    """The model cards under ``folder`` (recursively): ``{path: (mtime_ns, size)}``.

    Every ``*.json`` file counts; :func:`new_trainings` reads only those that changed.
    A missing folder gives ``{}``.
    """
    root = Path(folder)
    if not root.is_dir():
        return {}
    found = {}
    for path in root.rglob("*.json"):
        try:
            stat = path.stat()
        except OSError:
            continue
        found[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return found


def new_trainings(before: Mapping[str, tuple[int, int]], after: Mapping[str, tuple[int, int]],
                  seen: set | None = None) -> list[Training]:
    """The finished trainings whose cards appeared or changed between two snapshots.

    A changed file counts only when it is a finished training's card (``training`` and
    ``evaluation`` or ``classes`` fields; checkpoints written during training lack them).
    ``seen`` (updated in place) drops a training already counted, e.g. a card copied
    elsewhere with its ``training`` summary unchanged.

    Raises:
        EstimateError: A finished card lacks a field the estimate needs.
    """
    seen = set() if seen is None else seen
    found = []
    for path in sorted(after):
        if before.get(path) == after[path]:
            continue
        try:
            card = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(card, dict) or "training" not in card or "history" not in card:
            continue
        identity = json.dumps([card.get("architecture"), card.get("data", {}).get("manifest_hash"),
                               card["training"]], sort_keys=True, default=str)
        if identity in seen:
            continue
        seen.add(identity)
        found.append(Training.from_card(card, path))
    return found


@dataclass(frozen=True)
class CpuMeasurements:
    """What this machine measured, for :func:`estimate_chapter`.

    Attributes:
        matmul_gflops: Sustained float32 matmul rate of this CPU (GFLOPS, > 0).
        images_per_second: Training throughput at 224 px per :meth:`Training.throughput_key`
            (images/s, > 0).
        decode_images_per_second: Kaggle-size JPEGs decoded and resized to 224 px per
            second per CPU core (> 0).
    """

    matmul_gflops: float
    images_per_second: dict[str, float] = field(default_factory=dict)
    decode_images_per_second: float = 1.0

    def __post_init__(self):
        if not self.matmul_gflops > 0:
            raise EstimateError(f"matmul_gflops must be positive, got {self.matmul_gflops}.")
        if not self.decode_images_per_second > 0:
            raise EstimateError(f"decode_images_per_second must be positive, got {self.decode_images_per_second}.")
        bad = {k: v for k, v in self.images_per_second.items() if not v > 0}
        if bad:
            raise EstimateError(f"images_per_second must be positive, got {bad}.")


def t4_ratio(cpu_gflops: float, t4_tflops: float = DEFAULT_T4_TFLOPS) -> float:
    """How many times faster the T4 is assumed to train than this CPU: ``1000 t4_tflops / cpu_gflops``.

    Args:
        cpu_gflops: This CPU's measured float32 matmul rate (GFLOPS, > 0).
        t4_tflops: The assumed sustained T4 rate (TFLOPS, > 0; at most the FP16 tensor peak, 65).

    Raises:
        EstimateError: A rate is not positive, or ``t4_tflops`` exceeds the T4's peak.
    """
    if not cpu_gflops > 0:
        raise EstimateError(f"The CPU rate must be positive GFLOPS, got {cpu_gflops}.")
    if not 0 < t4_tflops <= T4_PEAK_FP16_TENSOR_TFLOPS:
        raise EstimateError(f"The sustained T4 rate must be in (0, {T4_PEAK_FP16_TENSOR_TFLOPS}] TFLOPS "
                            f"(its FP16 tensor peak), got {t4_tflops}.")
    return 1000.0 * t4_tflops / cpu_gflops


@dataclass(frozen=True)
class ChapterEstimate:
    """The estimated full-profile time of one chapter on a Colab T4 (seconds).

    Attributes:
        name: The chapter.
        training_seconds: Its trainings at the full profile's epochs (an upper bound:
            early stopping may end sooner).
        other_seconds: Everything else: the rehearsal's non-training time plus, per
            training, decoding the splits the pipeline caches once (:func:`once_seconds`).
        trainings: How many trainings it runs.
    """

    name: str
    training_seconds: float
    other_seconds: float
    trainings: int

    @property
    def seconds(self) -> float:
        """Total estimated seconds."""
        return self.training_seconds + self.other_seconds

    @property
    def minutes(self) -> float:
        """Total estimated minutes."""
        return self.seconds / 60.0


#: The input pipeline's ``cache="auto"`` limit (bytes): a split whose decoded 1-channel float32
#: images fit stays in memory after its first pass (the value of
#: ``pneumo_lib.data.pipeline.AUTO_CACHE_BYTES``, checked by the tests; kept here so that this
#: module does not import TensorFlow).
CACHE_BYTES = 256 * 2**20


def is_cached(n_images: int, image_size: int = FULL_IMAGE_SIZE, cache_bytes: int = CACHE_BYTES) -> bool:
    """Whether the pipeline keeps ``n_images`` decoded images in memory (decoded once, not every epoch).

    ``n_images * image_size**2 * 4 <= cache_bytes``: at 224 px up to 1,337 images (the full
    validation and test splits are cached, the full training split of 4,446 streams from disk).
    """
    return n_images * image_size * image_size * 4 <= cache_bytes


def decode_seconds(n_images: int, cpu: CpuMeasurements, colab_cpus: int = COLAB_CPUS) -> float:
    """Seconds Colab's CPUs take to decode and resize ``n_images`` Kaggle-size JPEGs once.

    Raises:
        EstimateError: ``colab_cpus`` < 1.
    """
    if colab_cpus < 1:
        raise EstimateError(f"colab_cpus must be at least 1, got {colab_cpus}.")
    return n_images / (cpu.decode_images_per_second * colab_cpus)


def training_seconds(training: Training, cpu: CpuMeasurements, *, t4_tflops: float = DEFAULT_T4_TFLOPS,
                     colab_cpus: int = COLAB_CPUS, profile: Profile = PROFILES["full"],
                     splits: Mapping[str, int] = FULL_SPLIT_COUNTS) -> float:
    """Estimated seconds of one training's epochs on a Colab T4 at the full profile's epochs.

    Per epoch: ``max(n_train / T4 images/s, decoding n_train)`` when the training images
    stream from disk (:func:`is_cached` false), else the GPU part alone (their one decoding
    is in :func:`once_seconds`); ``n_train = round(train_fraction * splits["train"])``, T4
    images/s = the CPU's images/s for the phase times :func:`t4_ratio`; summed over the
    phases' epochs. Validation batches are not counted (their split is cached, and their
    forward passes are cheap next to training steps).

    Raises:
        EstimateError: No CPU throughput for the architecture and phase, bad rates, or
            ``colab_cpus`` < 1.
    """
    ratio = t4_ratio(cpu.matmul_gflops, t4_tflops)
    n_train = round(training.train_fraction * splits["train"])
    decode_epoch = 0.0 if is_cached(n_train) else decode_seconds(n_train, cpu, colab_cpus)
    total = 0.0
    for phase, epochs in training.full_epochs(profile).items():
        key = training.throughput_key(phase)
        if key not in cpu.images_per_second:
            raise EstimateError(f"No measured CPU throughput for {key!r} (training {training.card or key}); "
                                f"measured: {', '.join(sorted(cpu.images_per_second)) or 'none'}.")
        gpu_epoch = n_train / (cpu.images_per_second[key] * ratio)
        total += epochs * max(gpu_epoch, decode_epoch)
    return total


def estimate_chapter(record: ChapterRecord, cpu: CpuMeasurements, *, t4_tflops: float = DEFAULT_T4_TFLOPS,
                     colab_cpus: int = COLAB_CPUS, profile: Profile = PROFILES["full"],
                     splits: Mapping[str, int] = FULL_SPLIT_COUNTS) -> ChapterEstimate:
    """Estimated full-profile time of one chapter on a Colab T4 (see the module docstring).

    Raises:
        EstimateError: As :func:`training_seconds`.
    """
    train = sum(training_seconds(t, cpu, t4_tflops=t4_tflops, colab_cpus=colab_cpus, profile=profile,
                                 splits=splits) for t in record.trainings)
    once = sum(once_seconds(t, cpu, colab_cpus=colab_cpus, splits=splits) for t in record.trainings)
    return ChapterEstimate(record.name, train, record.non_training_seconds + once, len(record.trainings))


def once_seconds(training: Training, cpu: CpuMeasurements, *, colab_cpus: int = COLAB_CPUS,
                 splits: Mapping[str, int] = FULL_SPLIT_COUNTS) -> float:
    """Seconds of decoding a training does once: each cached split (val, test, and train when it fits).

    Raises:
        EstimateError: ``colab_cpus`` < 1.
    """
    n_train = round(training.train_fraction * splits["train"])
    images = sum(n for n in (n_train, splits["val"], splits["test"]) if is_cached(n))
    return decode_seconds(images, cpu, colab_cpus)


def assumptions_line(cpu: CpuMeasurements, *, t4_tflops: float = DEFAULT_T4_TFLOPS,
                     colab_cpus: int = COLAB_CPUS, splits: Mapping[str, int] = FULL_SPLIT_COUNTS) -> str:
    """One line stating every assumption and measured rate behind the estimate."""
    ratio = t4_ratio(cpu.matmul_gflops, t4_tflops)
    rates = ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.images_per_second.items())) or "none needed"
    return (f"assumptions: T4 sustained {t4_tflops:g} TFLOPS (datasheet peak {T4_PEAK_FP32_TFLOPS:g} FP32, "
            f"{T4_PEAK_FP16_TENSOR_TFLOPS:g} FP16 tensor) / this CPU's float32 matmul {cpu.matmul_gflops:.1f} GFLOPS "
            f"= T4 {ratio:.0f}x this CPU; CPU training images/s at {FULL_IMAGE_SIZE} px (measured here): {rates}; "
            f"full splits train {splits['train']}, val {splits['val']}, test {splits['test']}; "
            f"epochs {PROFILES['full'].epochs} (+{PROFILES['full'].fine_tune_epochs} fine-tuning) each, an upper "
            f"bound (early stopping may end sooner); JPEG decoding {cpu.decode_images_per_second:.1f} images/s per "
            f"core on {colab_cpus} Colab vCPUs, every epoch for training splits too large to cache at "
            f"{FULL_IMAGE_SIZE} px, once for the others; the rehearsal's non-training time (kernel start, "
            f"evaluation, CAM, figures) added as measured (a lower bound: those run at full counts on Colab)")


def format_section(estimates: Iterable[ChapterEstimate], cpu: CpuMeasurements, *,
                   t4_tflops: float = DEFAULT_T4_TFLOPS, colab_cpus: int = COLAB_CPUS) -> str:
    """The report section: per-chapter minutes (training, other, total) and the assumptions line."""
    estimates = list(estimates)
    width = max([len("chapter")] + [len(e.name) for e in estimates])
    lines = ["Estimated full run on a Colab T4 (estimate, not measured):",
             f"  {'chapter':<{width}}  {'trainings':>9}  {'train min':>9}  {'other min':>9}  {'total min':>9}"]
    for e in estimates:
        lines.append(f"  {e.name:<{width}}  {e.trainings:>9}  {e.training_seconds / 60:9.1f}  "
                     f"{e.other_seconds / 60:9.1f}  {e.minutes:9.1f}")
    total = sum(e.seconds for e in estimates) / 60
    lines.append(f"  {'total':<{width}}  {sum(e.trainings for e in estimates):>9}  "
                 f"{sum(e.training_seconds for e in estimates) / 60:9.1f}  "
                 f"{sum(e.other_seconds for e in estimates) / 60:9.1f}  {total:9.1f}")
    lines.append("  " + assumptions_line(cpu, t4_tflops=t4_tflops, colab_cpus=colab_cpus))
    return "\n".join(lines)


# --------------------------------------------------------------------------- measuring here


def measure_matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """This CPU's float32 matmul rate (GFLOPS): the best of ``repeats`` ``n x n`` NumPy products."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * n ** 3 / best / 1e9


def measure_train_throughput(key: str, size: int = FULL_IMAGE_SIZE, batch_size: int = 8, steps: int = 2) -> float:
    """CPU training images/s for one :meth:`Training.throughput_key` (``benchmarks/train_throughput.py`` prints it per model).

    The model (random weights; ``+whole``: every layer trainable) is compiled as
    :func:`pneumo_lib.training.compile_model` does, warmed up one step, then timed over
    ``steps`` ``train_on_batch`` calls of ``batch_size`` random images of ``size`` px.
    """
    import numpy as np

    from pneumo_lib import models, training

    name, _, whole = key.partition("+")
    options = {"train_backbone": True} if whole and models.architecture(name).family == "backbone" else {}
    model = models.build_model(name, size, weights=None, **options)
    training.compile_model(model, learning_rate=1e-3)
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, size, size, model.input_shape[-1]), dtype=np.float32)
    y = rng.integers(0, 2, (batch_size, 1)).astype("float32")
    model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * batch_size / (time.perf_counter() - start)


def measure_decode_rate(paths: Iterable[str | os.PathLike[str]], size: int = FULL_IMAGE_SIZE,
                        limit: int = 48) -> float:
    """Images decoded and resized to ``size`` px per second per CPU core, through the library's pipeline.

    Reads up to ``limit`` of ``paths`` (Kaggle-size JPEGs) with :func:`pneumo_lib.data.load_images`
    twice (the second, timed, run has a warm file cache) and divides by ``os.cpu_count()``.

    Raises:
        EstimateError: No paths.
    """
    from pneumo_lib import data

    chosen = [str(p) for p in paths][:limit]
    if not chosen:
        raise EstimateError("No images to measure the decoding rate on.")
    data.load_images(chosen[:4], size)
    start = time.perf_counter()
    data.load_images(chosen, size)
    return len(chosen) / (time.perf_counter() - start) / (os.cpu_count() or 1)


def needed_keys(records: Iterable[ChapterRecord]) -> list[str]:
    """The throughput keys the records' trainings need, sorted."""
    return sorted({t.throughput_key(p) for r in records for t in r.trainings for p in t.phases})


def measure_cpu(records: Iterable[ChapterRecord], decode_paths: Iterable[str | os.PathLike[str]], *,
                echo: Any = None) -> CpuMeasurements:
    """Measure the matmul rate, the decoding rate and every needed training throughput here."""
    say = echo or (lambda message: None)
    gflops = measure_matmul_gflops()
    say(f"  float32 matmul: {gflops:.1f} GFLOPS")
    decode = measure_decode_rate(decode_paths)
    say(f"  JPEG decoding at {FULL_IMAGE_SIZE} px: {decode:.1f} images/s per core")
    rates = {}
    for key in needed_keys(records):
        rates[key] = measure_train_throughput(key)
        say(f"  training {key} at {FULL_IMAGE_SIZE} px: {rates[key]:.1f} images/s")
    return CpuMeasurements(gflops, rates, decode)


def write_records(path: str | os.PathLike[str], records: Iterable[ChapterRecord]) -> Path:
    """Save chapter records as JSON (read back with :func:`read_records`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([r.as_dict() for r in records], indent=1) + "\n", encoding="utf-8")
    return path


def read_records(path: str | os.PathLike[str]) -> list[ChapterRecord]:
    """The chapter records :func:`write_records` saved.

    Raises:
        EstimateError: The file is not a list of records.
    """
    values = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(values, list):
        raise EstimateError(f"{path} does not hold a list of chapter records.")
    return [ChapterRecord.from_dict(v) for v in values]
