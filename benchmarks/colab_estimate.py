"""Estimated full-profile time of each chapter on a Colab T4, from a rehearsal's records (an estimate, not a measurement).

Run: ``PNEUMO_HOME=... .venv/bin/python benchmarks/colab_estimate.py RECORDS [--t4-tflops 4] [--colab-cpus 2]``

``RECORDS`` is the ``rehearsal-trainings.json`` a rehearsal writes into its ``--out`` folder
(``pneumo book run --profile full --rehearse --out DIR``): per chapter its wall time and the
trainings it ran. This script measures what the estimate needs on this machine (float32
matmul GFLOPS, training images/s of each architecture involved at 224 px, JPEG decoding of the
Kaggle-size images under ``--images``, default the rehearsal's data) and prints the same table
as the rehearsal report's section, so the assumptions (``--t4-tflops``: the sustained T4 rate;
``--colab-cpus``) can be changed without re-running the rehearsal. See
:mod:`pneumo_lib.colab_estimate` for the model. Numbers on a shared CPU are noisy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pneumo_lib import colab_estimate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, help="rehearsal-trainings.json of a rehearsal's --out folder")
    parser.add_argument("--t4-tflops", type=float, default=colab_estimate.DEFAULT_T4_TFLOPS,
                        help=f"assumed sustained T4 rate in TFLOPS (default {colab_estimate.DEFAULT_T4_TFLOPS:g})")
    parser.add_argument("--colab-cpus", type=int, default=colab_estimate.COLAB_CPUS,
                        help="CPU cores decoding JPEGs on Colab (default 2)")
    parser.add_argument("--images", type=Path, default=None,
                        help="a Kaggle-layout chest_xray folder whose train JPEGs time the decoding "
                             "(default: the rehearsal's data)")
    args = parser.parse_args()
    records = colab_estimate.read_records(args.records)
    if args.images is None:
        from pneumo_lib import rehearsal

        args.images, _, _ = rehearsal.choose_data()
    images = sorted(p for p in (args.images / "train").glob("*/*") if p.suffix.lower() in (".jpeg", ".jpg"))
    print(f"measuring this CPU ({len(records)} chapters, "
          f"{sum(len(r.trainings) for r in records)} trainings in {args.records}) ...", flush=True)
    cpu = colab_estimate.measure_cpu(records, images, echo=lambda line: print(line, flush=True))
    estimates = [colab_estimate.estimate_chapter(r, cpu, t4_tflops=args.t4_tflops, colab_cpus=args.colab_cpus)
                 for r in records]
    print(colab_estimate.format_section(estimates, cpu, t4_tflops=args.t4_tflops, colab_cpus=args.colab_cpus))


if __name__ == "__main__":
    main()
