"""``pneumo info``: versions, the active profiles and where data and models live."""

from __future__ import annotations

import argparse
import json

from pneumo_lib import paths, profiles, runtime


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="show versions, profiles and data locations")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_info)


def _info(args: argparse.Namespace) -> int:
    report = {
        "versions": runtime.versions(),
        "profiles": {name: p.description for name, p in profiles.PROFILES.items()},
        "home": str(paths.pneumo_home()),
        "data": {source: str(paths.dataset_dir(source)) for source in paths.SOURCES},
        "models": str(paths.model_cache_dir()),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for name, version in report["versions"].items():
        print(f"{name:>14}  {version}")
    print()
    for name, text in report["profiles"].items():
        print(f"profile {name:<6} {text}")
    print()
    print(f"home    {report['home']}")
    for source, folder in report["data"].items():
        print(f"data    {source:<8} {folder}")
    print(f"models  {report['models']}")
    return 0
