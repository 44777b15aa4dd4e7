"""pneumo_lib.colab_estimate: the Colab T4 estimate from a rehearsal, checked against answers worked out by hand."""

from __future__ import annotations

import json
import os

import pytest

from pneumo_lib import colab_estimate as ce
from pneumo_lib.profiles import PROFILES

def card(arch="paper_cnn", train_images=30, pool=(10, 30), phases=("train",), seconds=12.5, **extra):
    """A model card as pneumo_lib.experiments writes it, with only the fields the estimate reads."""
    values = {
        "architecture": arch,
        "data": {"train_images": train_images, "counts": {"train": {"NORMAL": pool[0], "PNEUMONIA": pool[1]}},
                 "manifest_hash": "abc"},
        "history": {"phase": list(phases), "loss": [0.5] * len(phases)},
        "training": {"train_seconds": seconds, "epochs_run": len(phases)},
        "evaluation": {},
    }
    values.update(extra)
    return values


def test_full_split_counts_follow_kaggle_and_make_splits():
    # 1,341 + 8 NORMAL: ceil(0.15 * 1349) = 203 to val; 3,875 + 8 PNEUMONIA: ceil(0.15 * 3883) = 583.
    assert ce.full_split_counts() == {"train": 1146 + 3300, "val": 203 + 583, "test": 624}
    assert ce.FULL_SPLIT_COUNTS == {"train": 4446, "val": 786, "test": 624}
    small = {"train": (100, 300), "val": (0, 0), "test": (10, 20)}
    assert ce.full_split_counts(small, 0.1) == {"train": 90 + 270, "val": 40, "test": 30}
    with pytest.raises(ce.EstimateError, match="val_fraction must be between 0 and 1"):
        ce.full_split_counts(small, 1.5)
    with pytest.raises(ce.EstimateError, match="missing test"):
        ce.full_split_counts({"train": (1, 1), "val": (1, 1)})


def test_t4_ratio_and_its_bad_inputs():
    assert ce.t4_ratio(100.0, 4.0) == pytest.approx(40.0)
    assert ce.t4_ratio(50.0) == pytest.approx(1000 * ce.DEFAULT_T4_TFLOPS / 50.0)
    with pytest.raises(ce.EstimateError, match="sustained T4 rate must be in"):
        ce.t4_ratio(100.0, -1.0)
    with pytest.raises(ce.EstimateError, match="sustained T4 rate must be in"):
        ce.t4_ratio(100.0, 70.0)  # above the FP16 tensor peak
    with pytest.raises(ce.EstimateError, match="CPU rate must be positive"):
        ce.t4_ratio(0.0, 4.0)


def test_a_training_from_its_card():
    t = ce.Training.from_card(card(phases=("train", "train", "fine-tune"), arch="xception"), "m.json")
    assert t.architecture == "xception" and t.train_fraction == pytest.approx(30 / 40)
    assert t.phases == ("train", "fine-tune") and t.rehearsal_seconds == 12.5
    assert t.full_epochs() == {"train": PROFILES["full"].epochs, "fine-tune": PROFILES["full"].fine_tune_epochs}
    assert [t.throughput_key(p) for p in t.phases] == ["xception", "xception+whole"]
    whole = ce.Training.from_card(card(arch="resnet50", train_backbone=True))
    assert whole.throughput_key("train") == "resnet50+whole"


@pytest.mark.parametrize("drop, message", [
    ("architecture", "'architecture'"),
    ("data.train_images", "'data.train_images'"),
    ("data.counts", "'data.counts.train'"),
    ("history", "'history.phase'"),
    ("training", "'training.train_seconds'"),
])
def test_a_card_without_a_needed_field_is_named(drop, message):
    values = card()
    *parents, last = drop.split(".")
    node = values
    for part in parents:
        node = node[part]
    del node[last]
    with pytest.raises(ce.EstimateError, match=f"The model card m.json has no field {message}"):
        ce.Training.from_card(values, "m.json")


def test_bad_values_in_cards_and_records():
    with pytest.raises(ce.EstimateError, match="both must be positive"):
        ce.Training.from_card(card(train_images=0), "m.json")
    with pytest.raises(ce.EstimateError, match="phases of m.json must be"):
        ce.Training.from_card(card(phases=()), "m.json")
    with pytest.raises(ce.EstimateError, match="seconds of chapter 01 must be >= 0"):
        ce.ChapterRecord("01", -1.0)
    with pytest.raises(ce.EstimateError, match="matmul_gflops must be positive"):
        ce.CpuMeasurements(-5.0, {"paper_cnn": 1.0}, 1.0)
    with pytest.raises(ce.EstimateError, match="images_per_second must be positive"):
        ce.CpuMeasurements(5.0, {"paper_cnn": 0.0}, 1.0)
    with pytest.raises(ce.EstimateError, match="lacks the field 'seconds'"):
        ce.ChapterRecord.from_dict({"name": "01"})


CPU = ce.CpuMeasurements(100.0, {"paper_cnn": 2.0, "xception": 0.5, "xception+whole": 0.25}, 10.0)
# Large enough that 2,000 training images stream from disk at 224 px, 400 / 100 / 1,000 do not.
SPLITS = {"train": 4000, "val": 400, "test": 100}


def test_which_splits_the_pipeline_caches():
    from pneumo_lib.data import pipeline

    assert ce.CACHE_BYTES == pipeline.AUTO_CACHE_BYTES
    assert ce.is_cached(1337) and not ce.is_cached(1338)  # 1,337 x 224 x 224 x 4 B <= 256 MiB
    assert not ce.is_cached(ce.FULL_SPLIT_COUNTS["train"]) and ce.is_cached(ce.FULL_SPLIT_COUNTS["val"])
    assert ce.decode_seconds(100, CPU, colab_cpus=2) == pytest.approx(5.0)  # 100 / (10 x 2)


def test_training_seconds_worked_out_by_hand():
    # T4 = 40 x the CPU (4 TFLOPS / 100 GFLOPS). paper_cnn on half of 4,000 images (2,000: streamed):
    # GPU 2,000 / 80 = 25 s an epoch, decoding 2,000 / (10 x 2 cores) = 100 s; decoding bounds it: 25 x 100.
    half = ce.Training("paper_cnn", 0.5, ("train",))
    assert ce.training_seconds(half, CPU, t4_tflops=4.0, splits=SPLITS) == pytest.approx(2500.0)
    # Its val (400) and test (100) are cached, decoded once: 500 / 20 = 25 s.
    assert ce.once_seconds(half, CPU, splits=SPLITS) == pytest.approx(25.0)
    # xception on all 4,000: train 4,000 / 20 = 200 s > decoding 200 s -> 25 x 200; fine-tune 4,000 / 10
    # = 400 s -> 10 x 400. Total 9,000 s.
    both = ce.Training("xception", 1.0, ("train", "fine-tune"))
    assert ce.training_seconds(both, CPU, t4_tflops=4.0, splits=SPLITS) == pytest.approx(5000.0 + 4000.0)
    # Twice the T4 rate halves the GPU part only: train max(100, 200) x 25 + fine-tune max(200, 200) x 10.
    assert ce.training_seconds(both, CPU, t4_tflops=8.0, splits=SPLITS) == pytest.approx(5000.0 + 2000.0)
    # A subset of 1,000 (a quarter) is cached: GPU time only, 25 x 1,000 / 80; decoded once with val and test.
    quarter = ce.Training("paper_cnn", 0.25, ("train",))
    assert ce.training_seconds(quarter, CPU, t4_tflops=4.0, splits=SPLITS) == pytest.approx(312.5)
    assert ce.once_seconds(quarter, CPU, splits=SPLITS) == pytest.approx(1500 / 20)
    with pytest.raises(ce.EstimateError, match="No measured CPU throughput for 'vgg16'"):
        ce.training_seconds(ce.Training("vgg16", 1.0, ("train",)), CPU, splits=SPLITS)
    with pytest.raises(ce.EstimateError, match="sustained T4 rate"):
        ce.training_seconds(half, CPU, t4_tflops=-2.0, splits=SPLITS)
    with pytest.raises(ce.EstimateError, match="colab_cpus must be at least 1"):
        ce.training_seconds(half, CPU, colab_cpus=0, splits=SPLITS)


def test_a_chapter_estimate_worked_out_by_hand():
    record = ce.ChapterRecord("04_transfer", 100.0, (
        ce.Training("paper_cnn", 0.5, ("train",), rehearsal_seconds=30.0),
        ce.Training("xception", 1.0, ("train", "fine-tune"), rehearsal_seconds=10.0),
    ))
    assert record.non_training_seconds == pytest.approx(60.0)
    estimate = ce.estimate_chapter(record, CPU, t4_tflops=4.0, splits=SPLITS)
    assert estimate.trainings == 2
    assert estimate.training_seconds == pytest.approx(2500.0 + 9000.0)
    # 60 s outside training plus decoding the cached val and test once per training: 2 x 500 / 20 = 50 s.
    assert estimate.other_seconds == pytest.approx(110.0)
    assert estimate.minutes == pytest.approx((11500.0 + 110.0) / 60)
    idle = ce.estimate_chapter(ce.ChapterRecord("00_intro", 7.5), CPU)
    assert (idle.training_seconds, idle.other_seconds) == (0.0, 7.5)
    text = ce.format_section([estimate, idle], CPU, t4_tflops=4.0)
    lines = text.splitlines()
    assert lines[0] == "Estimated full run on a Colab T4 (estimate, not measured):"
    assert lines[2].split() == ["04_transfer", "2", "191.7", "1.8", "193.5"]
    assert lines[3].split() == ["00_intro", "0", "0.0", "0.1", "0.1"]
    assert lines[4].split() == ["total", "2", "191.7", "2.0", "193.6"]  # (110 + 7.5) / 60, 11,617.5 / 60
    assert "T4 sustained 4 TFLOPS" in lines[5] and "= T4 40x this CPU" in lines[5] and "upper bound" in lines[5]


def test_new_trainings_are_the_cards_a_chapter_wrote(tmp_path):
    models = tmp_path / "models"
    (models / "a").mkdir(parents=True)
    (models / "a" / "old.json").write_text(json.dumps(card(arch="paper_cnn")))
    before = ce.snapshot_cards(models)
    assert ce.snapshot_cards(tmp_path / "nothing") == {}
    (models / "b").mkdir()
    (models / "b" / "new.json").write_text(json.dumps(card(arch="xception", phases=("train", "fine-tune"))))
    (models / "b" / "ckpt.json").write_text(json.dumps({"architecture": "vgg16", "checkpoint_epoch": 1}))
    (models / "b" / "copy.json").write_text(json.dumps(card(arch="xception", phases=("train", "fine-tune"))))
    (models / "b" / "manifest.json").write_text("[1, 2]")
    after = ce.snapshot_cards(models)
    seen: set = set()
    found = ce.new_trainings(before, after, seen)
    assert [(t.architecture, t.phases) for t in found] == [("xception", ("train", "fine-tune"))]
    assert ce.new_trainings(after, after, seen) == []  # nothing changed: the cached model cost nothing
    # The old card rewritten (a retraining) counts in the chapter that rewrote it.
    old = models / "a" / "old.json"
    old.write_text(json.dumps(card(arch="paper_cnn", seconds=99.0)))
    os.utime(old, ns=(after[str(old)][0] + 10**9, after[str(old)][0] + 10**9))
    again = ce.new_trainings(after, ce.snapshot_cards(models), seen)
    assert [(t.architecture, t.rehearsal_seconds) for t in again] == [("paper_cnn", 99.0)]
    (models / "bad.json").write_text(json.dumps({**card(), "architecture": None} | {"data": {}}))
    with pytest.raises(ce.EstimateError, match="has no field 'data.train_images'"):
        ce.new_trainings(after, ce.snapshot_cards(models), set())


def test_records_round_trip(tmp_path):
    records = [ce.ChapterRecord("01", 12.0, (ce.Training("xception", 0.25, ("train", "fine-tune"), True, 3.0, "x"),)),
               ce.ChapterRecord("02", 4.0)]
    path = ce.write_records(tmp_path / "r" / "records.json", records)
    assert ce.read_records(path) == records
    assert ce.needed_keys(records) == ["xception+whole"]
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ce.EstimateError, match="does not hold a list"):
        ce.read_records(tmp_path / "bad.json")


def test_the_cpu_measurements_are_positive():
    assert ce.measure_matmul_gflops(n=128, repeats=2) > 0
    assert ce.measure_train_throughput("paper_cnn", size=48, batch_size=2, steps=1) > 0
    with pytest.raises(ce.EstimateError, match="No images"):
        ce.measure_decode_rate([])
