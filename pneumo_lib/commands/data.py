"""``pneumo data ...``: generate, download, fetch the sample, audit, split, prepare."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pneumo_lib.profiles import profile_names


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="generate, download, audit and split datasets")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = sub.add_parser("phantom", help="generate a phantom dataset in the Kaggle layout")
    p.add_argument("--out", type=Path, required=True, help="folder to create (holds chest_xray/ and masks/)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--scale", default="quick",
                   help="preset: quick (the book's), full (Kaggle's 5,856 images at 256 px), "
                        "kaggle (Kaggle's counts and image sizes) or tiny")
    p.add_argument("--counts", metavar="SPLIT=N,P", nargs="+", default=(),
                   help="override counts, e.g. train=100,300 test=20,30 (NORMAL,PNEUMONIA)")
    p.add_argument("--size", type=int, default=None, help="nominal image height in px (default: the preset's)")
    p.add_argument("--hospital", default="A", help="acquisition site: A (default) or B")
    p.add_argument("--class-size", action="store_true",
                   help="confounder: PNEUMONIA studies smaller than NORMAL ones, as on Kaggle")
    p.add_argument("--shortcut", action="store_true", help="shortcut variant: a marker on every train/val PNEUMONIA image (and 2%% of NORMAL), fainter lesions there, plain test split")
    p.add_argument("--force", action="store_true", help="replace an existing folder")
    p.set_defaults(handler=_phantom)

    p = sub.add_parser("download", help="download the real Kaggle dataset (needs a Kaggle token)")
    p.add_argument("--out", type=Path, default=None, help="folder to hold chest_xray/ (default: the data folder)")
    p.add_argument("--force", action="store_true", help="replace an existing dataset once the new one is complete")
    p.set_defaults(handler=_download)

    p = sub.add_parser("sample", help="fetch the 16 real Kaggle validation images from PyPI")
    p.add_argument("--out", type=Path, default=None, help="folder to hold chest_xray/ (default: the data folder)")
    p.add_argument("--force", action="store_true")
    p.set_defaults(handler=_sample)

    p = sub.add_parser("audit", help="counts, unreadable files, sizes, duplicates, shared patients")
    p.add_argument("dir", type=Path, help="a chest_xray folder (or the folder holding it)")
    p.add_argument("--splits", nargs="+", default=None, help="splits to expect (default train val test)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_audit)

    p = sub.add_parser("split", help="write the patient-grouped split manifest of a dataset")
    p.add_argument("dir", type=Path, help="a chest_xray folder (or the folder holding it)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.set_defaults(handler=_split)

    p = sub.add_parser("prepare", help="make the default local data of a profile exist (and the real sample)")
    p.add_argument("--profile", default="quick", choices=profile_names())
    p.add_argument("--shortcut", action="store_true", help="also the shortcut variant (phantom only)")
    p.add_argument("--no-sample", action="store_true", help="skip fetching the 16 real images from PyPI")
    p.set_defaults(handler=_prepare)


def _parse_counts(items) -> dict[str, tuple[int, int]]:
    counts = {}
    for item in items:
        try:
            split, values = item.split("=")
            n, p = (int(v) for v in values.split(","))
        except ValueError:
            raise ValueError(f"--counts takes SPLIT=NORMAL,PNEUMONIA (e.g. train=100,300), got {item!r}.") from None
        if split not in ("train", "val", "test") or n < 0 or p < 0:
            raise ValueError(f"--counts: unknown split or negative count in {item!r}.")
        counts[split] = (n, p)
    return counts


def _phantom(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from pneumo_lib.data import phantom

    spec = phantom.phantom_spec(args.scale, args.seed, shortcut=args.shortcut, size=args.size,
                                hospital=args.hospital, class_size=args.class_size)
    spec = replace(spec, counts={**spec.counts, **_parse_counts(args.counts)})
    spec.check()
    total = sum(sum(v) for v in spec.counts.values())
    print(f"Generating {total} images ({args.scale}, seed {args.seed}, hospital {spec.hospital}, "
          f"~{spec.size} px) in {args.out} ...", flush=True)
    start = time.perf_counter()
    folder = phantom.generate_phantom(args.out, spec, force=args.force)
    seconds = time.perf_counter() - start
    print(f"Done: {folder} ({total} images in {seconds:.0f} s, {total / max(seconds, 1e-9):.1f} images/s)")
    return 0


def _download(args: argparse.Namespace) -> int:
    from pneumo_lib.data.kaggle import download_kaggle

    folder = download_kaggle(args.out, force=args.force, quiet=False)
    print(f"Done: {folder}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from pneumo_lib.data.sample import download_sample

    folder = download_sample(args.out, force=args.force)
    print(f"Done: {folder}")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from pneumo_lib.data.audit import audit
    from pneumo_lib.data.layout import SPLITS

    report = audit(args.dir, tuple(args.splits) if args.splits else SPLITS)
    if args.json:
        print(json.dumps({
            "data_dir": str(report.data_dir), "ok": report.ok, "counts": report.counts,
            "problems": report.problems, "unreadable": report.unreadable, "notes": report.notes,
            "ignored": report.ignored,
            "modes": {c: dict(m) for c, m in report.modes.items()},
            "duplicates": report.duplicates, "shared_patients": report.shared_patients,
        }, indent=2))
    else:
        print(report.summary())
    return 0 if report.ok else 1


def _split(args: argparse.Namespace) -> int:
    from pneumo_lib.data.layout import resolve_data_dir
    from pneumo_lib.data.splits import make_splits, manifest_file

    folder = resolve_data_dir(args.dir)
    manifest = make_splits(folder, args.seed, args.val_fraction)
    for split, counts in manifest.counts().items():
        print(f"{split:<5} " + "  ".join(f"{c} {n}" for c, n in counts.items()))
    print(f"Manifest: {manifest_file(folder, args.seed, args.val_fraction)}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from pneumo_lib.data.sources import ensure_dataset, ensure_sample

    folder = ensure_dataset(args.profile, verbose=True)
    print(f"{args.profile}: {folder}")
    if args.shortcut:
        print(f"{args.profile} (shortcut): {ensure_dataset(args.profile, shortcut=True, verbose=True)}")
    if not args.no_sample:
        print(f"sample: {ensure_sample()}")
    sys.stdout.flush()
    return 0
