"""The benchmark commands run end to end on tiny inputs and print every row they promise.

Timings themselves are not asserted (benchmarks print ratios; tests do not time things);
what is checked is that each loader or method is measured, every ratio is a finite positive
number, and the streaming epoch of the memory benchmark sees every image exactly once.
"""

from __future__ import annotations

import math
import re

from _data_helpers import make_tiny

from pneumo_lib import cli
from pneumo_lib.data import layout

_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"


def test_bench_pipeline_measures_all_three_loaders(tmp_path, capsys):
    folder = make_tiny(tmp_path / "ds", seed=1, size=64)
    assert cli.main(["bench", "pipeline", "--data", str(folder), "--size", "16", "--batch", "8",
                     "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for loader in ("ours (make_dataset)", "image_dataset_from_directory", "ImageDataGenerator.flow_from_directory"):
        row = re.search(re.escape(loader) + r"\s+" + r"\s+".join([_NUMBER] * 8), out)
        assert row, f"no full row for {loader} in:\n{out}"
        values = [float(v) for v in row.groups()]
        assert all(math.isfinite(v) and v > 0 for v in values)
    ours = re.search(r"ours \(make_dataset\)\s+" + r"\s+".join([_NUMBER] * 8), out).groups()
    assert float(ours[2]) == 1.0 and float(ours[6]) == 1.0  # ours / ours
    assert "Targets:" in out


def test_streaming_epoch_of_the_memory_benchmark_sees_every_image_once(tmp_path, capsys):
    folder = make_tiny(tmp_path / "ds", seed=1, size=64)
    n_images = len(layout.list_images(folder, check=False))
    assert cli.main(["bench", "pipeline", "--stream", str(folder), "--size", "16", "--batch", "8"]) == 0
    seen, peak_mb = capsys.readouterr().out.split()[-2:]
    assert int(seen) == n_images
    assert float(peak_mb) > 0


def test_bench_cam_prints_every_method_and_both_floor_ratios(capsys):
    assert cli.main(["bench", "cam", "--model", "paper_cnn", "--size", "32", "--batch", "4", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "keras.io" in out and "tf-keras-vis" in out and "floor: forward+backward to layer" in out
    for label in ("to layer", "to input"):
        ratio = re.search(r"Grad-CAM batch / forward\+backward " + label + r":\s+" + _NUMBER + "x", out)
        assert ratio and 0 < float(ratio.group(1)) < 100, out
