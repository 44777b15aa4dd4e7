"""``pneumo bench pipeline``: input-pipeline throughput and memory, side by side in one run.

Throughput (images/s, epoch 1 and epoch 2, on the same phantom folder, grayscale,
same size and batch):

* ours: :func:`pneumo_lib.data.make_dataset` (parallel decode, in-memory cache when
  the decoded images fit, prefetch);
* ``keras.utils.image_dataset_from_directory`` (no cache, as usually called);
* ``ImageDataGenerator().flow_from_directory`` (rescale 1/255), the loader prior
  project B uses; Keras 3 keeps it as ``keras.src.legacy.preprocessing.image``.

Memory (``--memory``): peak resident memory of a fresh process that streams one
augmented epoch of our pipeline over a phantom dataset of 1,000 images and over one of
5,856 (Kaggle's count), at ``--memory-size`` px. Each measurement runs in its own
process so the peaks do not mix. On a shared CPU the absolute numbers are noisy; the
ratios, measured in one run, are what to compare.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from pneumo_lib.commands.bench_cam import bench_subparsers


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = bench_subparsers(subparsers).add_parser(
        "pipeline", help="input pipeline images/s (ours vs Keras loaders) and peak memory",
        description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="a chest_xray folder or the folder holding it (default: the quick profile's phantom data)")
    parser.add_argument("--size", type=int, default=64, help="model input side in px (default 64)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per loader; medians are printed")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory (generates datasets)")
    parser.add_argument("--memory-size", type=int, default=224, help="input side for the memory runs")
    parser.add_argument("--generation", action="store_true",
                        help="also time generating 1,000 phantom images of 256 px (target: under 30 s)")
    parser.add_argument("--stream", type=Path, default=None, help=argparse.SUPPRESS)  # child process mode
    parser.set_defaults(handler=_run)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _two_epochs(make, n_images: int) -> list[tuple[float, float]]:
    """``[(images/s, images per CPU-second)]`` of two passes over a fresh loader.

    ``make()`` returns an iterable of batches; building it (listing files, reading
    headers) counts towards epoch 1, since a user waits for it too. CPU seconds are
    those of the whole process (all threads): on a shared machine they are what
    each loader costs, whatever the other tenants do.
    """
    rates = []
    start, cpu = time.perf_counter(), _cpu_seconds()
    loader = make()
    for _ in range(2):
        seen = 0
        for batch in loader:
            seen += len(batch[1])
            if seen >= n_images:  # Keras' generator loops forever
                break
        now, cpu_now = time.perf_counter(), _cpu_seconds()
        rates.append((seen / (now - start), seen / max(cpu_now - cpu, 1e-9)))
        start, cpu = now, cpu_now
    return rates


def throughput(data_dir: Path, size: int, batch: int, repeats: int = 3) -> dict[str, list[tuple[float, float]]]:
    """``{loader: [(epoch 1 images/s, images/CPU-s), (epoch 2 ...)]}`` over the train folder of ``data_dir``.

    TensorFlow's one-time start-up (thread pools, kernels) is paid by a warm-up pass
    before any timing. The loaders then take turns, ``repeats`` rounds, each run on a
    fresh loader, so that a change of load on a shared machine hits all of them; the
    medians are reported.
    """
    from pneumo_lib._tf import keras  # first: it silences TensorFlow's start-up lines

    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    from pneumo_lib.data import layout, make_dataset

    records = [r for r in layout.list_images(data_dir) if r.split == "train"]
    paths = [data_dir / r.path for r in records]
    labels = [r.label for r in records]
    train = data_dir / "train"
    for _ in make_dataset(paths[:64], labels[:64], image_size=size, batch_size=batch, cache=False):
        pass  # warm-up
    loaders = {
        "ours (make_dataset)": lambda: make_dataset(paths, labels, image_size=size, batch_size=batch),
        "image_dataset_from_directory": lambda: keras.utils.image_dataset_from_directory(
            train, labels="inferred", label_mode="binary", color_mode="grayscale",
            image_size=(size, size), batch_size=batch, shuffle=False, verbose=False),
        "ImageDataGenerator.flow_from_directory": lambda: ImageDataGenerator(rescale=1 / 255).flow_from_directory(
            train, target_size=(size, size), color_mode="grayscale", class_mode="binary",
            batch_size=batch, shuffle=False),
    }
    runs: dict[str, list] = {name: [] for name in loaders}
    for _ in range(repeats):
        for name, make in loaders.items():
            runs[name].append(_two_epochs(make, len(paths)))
    return {name: [tuple(statistics.median(r[epoch][k] for r in rs) for k in (0, 1)) for epoch in (0, 1)]
            for name, rs in runs.items()}


def _stream(data_dir: Path, size: int, batch: int) -> int:
    """Child process: one augmented, shuffled, uncached epoch of our pipeline; prints peak RSS in MB."""
    from pneumo_lib.data import layout, make_dataset

    records = layout.list_images(data_dir, check=False)
    ds = make_dataset([data_dir / r.path for r in records], [r.label for r in records], image_size=size,
                      batch_size=batch, augment=True, shuffle=True, cache=False)
    n = sum(len(y) for _, y in ds)
    print(f"{n} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
    return 0


def memory(size: int, batch: int) -> dict[int, float]:
    """Peak RSS in MB of streaming one augmented epoch over 1,000 and 5,856 phantom images."""
    from pneumo_lib import paths
    from pneumo_lib.data import phantom

    out = {}
    presets = {1000: {"train": (253, 731), "val": (8, 8), "test": (0, 0)},
               5856: dict(phantom.PHANTOM_COUNTS["full"])}
    for n, counts in presets.items():
        root = paths.data_root() / f"bench-phantom-{n}"
        spec = replace(phantom.phantom_spec("full", 7), counts=counts)
        if phantom.read_spec(root) != spec:
            print(f"generating {n} phantom images in {root} ...", file=sys.stderr)
            phantom.generate_phantom(root, spec, force=True)
        proc = subprocess.run([sys.executable, "-m", "pneumo_lib.cli", "bench", "pipeline",
                               "--stream", str(root / "chest_xray"), "--size", str(size),
                               "--batch", str(batch)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the streaming process failed: {proc.stderr.strip().splitlines()[-1:]}")
        seen, peak = proc.stdout.split()[-2:]
        assert int(seen) == n, (seen, n)
        out[n] = float(peak)
    return out


def generation_seconds(spec, workers: int | None = None) -> float:
    """Seconds to generate (and write) the phantom dataset of ``spec`` into a temporary folder.

    ``workers``: shard processes (None: one per CPU core; 1: this process only).
    """
    import tempfile

    from pneumo_lib.data import phantom

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        phantom.generate_phantom(Path(tmp) / "gen", spec, workers=workers)
        return time.perf_counter() - start


def generation_report() -> list[str]:
    """Lines reporting phantom generation: the quick dataset with one process and with one per
    core (side by side, same run), and the ``kaggle`` preset's images per second on 240 images."""
    import os

    from pneumo_lib.data import phantom

    quick = phantom.phantom_spec("quick", 11)
    total = sum(map(sum, quick.counts.values()))
    many = generation_seconds(quick)
    one = generation_seconds(quick, workers=1)
    kaggle = replace(phantom.phantom_spec("kaggle", 11), counts={"train": (60, 180), "val": (0, 0), "test": (0, 0)})
    big = generation_seconds(kaggle)
    return [f"Phantom generation, quick preset ({total:,} images of ~256 px): {many:.1f} s with "
            f"{os.cpu_count()} worker processes, {one:.1f} s in one (ratio {one / many:.2f}; target under 60 s)",
            f"Phantom generation, kaggle preset (Kaggle's sizes, ~{kaggle.size} px high): "
            f"{240 / big:.1f} images/s ({5856 / (240 / big) / 60:.0f} min for its 5,856 images)"]


def _run(args: argparse.Namespace) -> int:
    if args.stream is not None:
        return _stream(args.stream, args.size, args.batch)
    from pneumo_lib.data import ensure_dataset, resolve_data_dir

    data_dir = resolve_data_dir(args.data) if args.data else ensure_dataset("quick", verbose=True)
    results = throughput(data_dir, args.size, args.batch, args.repeats)
    ours = results["ours (make_dataset)"]
    print(f"Pipeline throughput on {data_dir}/train, {args.size} px grayscale, batch {args.batch} "
          f"(median of {args.repeats}; epoch 1 includes building the loader; ratio = ours / loader)")
    print(f"{'':<40} {'images per second':^33} {'images per CPU-second':^33}")
    print(f"{'loader':<40}" + f" {'e1':>7} {'e2':>7} {'ours/it e1':>10} {'e2':>6}" * 2)
    for name, epochs in results.items():
        cells = []
        for k in (0, 1):  # wall clock, then CPU time
            e1, e2 = epochs[0][k], epochs[1][k]
            cells.append(f" {e1:>7.0f} {e2:>7.0f} {ours[0][k] / e1:>10.2f} {ours[1][k] / e2:>6.1f}")
        print(f"{name:<40}" + "".join(cells))
    print("Targets: ours >= 1x image_dataset_from_directory on epoch 1 and >= 2x later. On a shared "
          "machine the wall-clock columns move with the other tenants' load; the CPU columns do not.")
    if args.generation:
        print("\n" + "\n".join(generation_report()))
    if args.memory:
        peaks = memory(args.memory_size, args.batch)
        print(f"\nPeak memory streaming one augmented epoch at {args.memory_size} px (MB):")
        for n, mb in peaks.items():
            print(f"  {n:>5} images  {mb:>7.0f} MB")
        print(f"  growth 1,000 -> 5,856 images: {peaks[5856] / peaks[1000] - 1:+.1%} "
              f"(target < +20%, and < 2,048 MB)")
    return 0
