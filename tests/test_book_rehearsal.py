"""`pneumo book run --out` and `--profile full --rehearse`: the stored book untouched, the
shrunk profile, the Kaggle-shaped stand-in, subsets of a real folder, stand-in weights."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from pneumo_lib import book, paths, profiles
from pneumo_lib.data import standin

SMALL = {"train": (3, 4), "val": (8, 8), "test": (2, 3)}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PNEUMO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PNEUMO_DATA", raising=False)
    monkeypatch.delenv(paths.KAGGLE_DIR_ENV, raising=False)
    monkeypatch.delenv(profiles.REHEARSAL_ENV, raising=False)
    monkeypatch.delenv("PNEUMO_IMAGENET_WEIGHTS", raising=False)
    return tmp_path / "home"


def _tree_hash(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _chapter(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "quick"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), params, nbformat.v4.new_code_cell(body)]
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "pneumo": {"budget_seconds": 60}}
    nbformat.write(nb, path)


@pytest.fixture
def tiny_book(tmp_path):
    root = tmp_path / "bk"
    (root / "book").mkdir(parents=True)
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/01_claims\nchapters:\n  - file: book/02_env\n"
                                   "  - file: book/03_broken\n")
    _chapter(root / "book" / "03_broken.ipynb", "print('before')\n1 / 0")
    _chapter(root / "book" / "01_claims.ipynb",
             "from pneumo_lib import prose\nprose.claim(1 > 2, 'one beats two')\n"
             "prose.claim(True, 'fine')\nprint(open('relative.txt').read())")
    (root / "book" / "relative.txt").write_text("read from the book folder\n")
    _chapter(root / "book" / "02_env.ipynb",
             "import os, warnings\nwarnings.simplefilter('always')\n"
             "from pneumo_lib import profiles, data, models\nfrom pneumo_lib.data import standin\n"
             "P = profiles.get_profile(profile)\n"
             "folder = data.ensure_dataset(P)\n"
             "print(P.name, P.data_source, P.weights, P.image_size, P.epochs, P.images_per_class)\n"
             "print(len(data.list_images(folder)), standin.is_standin(folder))\n"
             "m = models.build_transfer_model('mobilenet_v2', P.image_size, weights=P.weights)\n"
             "print(m.input_shape)")
    return root


# --------------------------------------------------------------------------- --out


def test_out_leaves_the_book_byte_identical_and_counts_unsupported_claims(tiny_book, tmp_path, monkeypatch):
    monkeypatch.setenv("PNEUMO_CLAIMS", "strict")  # as the Makefile exports it
    before = _tree_hash(tiny_book / "book")
    lines: list[str] = []
    runs = book.run_book(["01"], root=tiny_book, out=tmp_path / "out", echo=lines.append,
                         report=tmp_path / "out" / "times.txt")
    assert _tree_hash(tiny_book / "book") == before
    assert runs[0].output == (tmp_path / "out" / "01_claims.ipynb").resolve()
    assert runs[0].unsupported_claims == ("one beats two",)
    assert book.unsupported_claims(runs[0].output) == ("one beats two",)
    text = nbformat.read(runs[0].output, as_version=4).cells[2].outputs
    assert "read from the book folder" in "".join(o.get("text", "") for o in text)  # cwd: the book folder
    table = (tmp_path / "out" / "times.txt").read_text().splitlines()
    assert table[1].split() == ["chapter", "seconds", "budget", "peak", "MB", "claims", "status"]
    assert table[2].split()[0] == "01_claims" and table[2].split()[4:] == ["1", "ok"]
    assert runs[0].peak_mb is not None and 10 < runs[0].peak_mb < 20_000  # a kernel's memory, in MB
    assert "  01_claims: one beats two" in table
    # In place the same chapter is strict: the false claim stops it, the stored file is kept.
    with pytest.raises(book.ChapterError, match="one beats two"):
        book.run_book(["01"], root=tiny_book, echo=lines.append)
    assert _tree_hash(tiny_book / "book") == before


def test_out_runs_every_chapter_and_reports_the_failed_ones(tiny_book, tmp_path):
    before = _tree_hash(tiny_book / "book")
    lines: list[str] = []
    with pytest.raises(book.ChapterError, match=r"1 chapter\(s\) failed:\nChapter 03_broken failed in cell 2 .*ZeroDivisionError"):
        book.run_book(["03", "01"], root=tiny_book, out=tmp_path / "out", echo=lines.append,
                      report=tmp_path / "times.txt")
    assert _tree_hash(tiny_book / "book") == before
    assert (tmp_path / "out" / "03_broken.failed.ipynb").is_file()  # the partial run, to read
    assert (tmp_path / "out" / "01_claims.ipynb").is_file()  # the next chapter still ran
    table = (tmp_path / "times.txt").read_text().splitlines()
    assert table[2].split()[0] == "03_broken" and table[2].split()[-1] == "FAILED"
    assert table[3].split()[0] == "01_claims" and table[3].split()[-1] == "ok"


def test_out_inside_the_chapters_folder_is_refused(tiny_book):
    before = _tree_hash(tiny_book / "book")
    for bad in (tiny_book / "book", tiny_book / "book" / "sub"):
        with pytest.raises(book.ChapterError, match="folder of the stored chapters"):
            book.run_book(["01"], root=tiny_book, out=bad, echo=lambda _: None)
    assert _tree_hash(tiny_book / "book") == before


@pytest.mark.parametrize("argv, message", [
    (["--rehearse", "--out", "X"], "--rehearse rehearses the full profile; pass --profile full (got 'quick')"),
    (["--profile", "full", "--rehearse"], "--rehearse needs --out DIR"),
    (["--profile", "full", "--rehearse", "--out", "X", "99"], "'99' is not a chapter. Valid chapters: 01_claims, 02_env, 03_broken."),
])
def test_bad_input_is_one_clear_line(tiny_book, tmp_path, capsys, argv, message):
    from pneumo_lib import cli

    argv = [str(tmp_path / a) if a == "X" else a for a in argv]
    assert cli.main(["book", "run", "--root", str(tiny_book), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "X").exists()


# --------------------------------------------------------------------------- the profile


def test_rehearsal_keeps_every_code_path_field_and_shrinks_only_sizes_and_counts():
    full, small = profiles.get_profile("full"), profiles.rehearsal("full")
    shrunk = set(profiles.REHEARSAL_SIZES)
    for field in profiles.FIELDS:
        a, b = getattr(full, field), getattr(small, field)
        if field == "description":
            assert b == a + " (rehearsal)"
        elif field == "phantom_scale":
            assert (a, b) == ("full", "quick")
        elif field == "images_per_class":
            assert a is None and 8 <= b < 100  # a subset, keeping Kaggle's 8 + 8 val split whole
        elif field in shrunk:
            assert b < a, field
        else:
            assert b == a, field
    assert (small.name, small.data_source, small.weights) == ("full", "kaggle", "imagenet")
    assert (small.epochs, small.fine_tune_epochs) == (1, 1)  # both training phases still run
    assert small.image_size >= 71  # Xception's minimum; every other backbone takes 32
    assert profiles.is_rehearsal(small) and not profiles.is_rehearsal(full)


def test_full_is_the_rehearsal_only_inside_one(monkeypatch):
    assert profiles.get_profile("full") == profiles.PROFILES["full"]
    monkeypatch.setenv(profiles.REHEARSAL_ENV, "1")
    assert profiles.get_profile("full") == profiles.rehearsal("full")
    assert profiles.get_profile("full", epochs=3).epochs == 3
    assert profiles.get_profile("quick") == profiles.PROFILES["quick"]


def test_images_per_class_is_optional_and_validated():
    quick = profiles.get_profile("quick")
    assert quick.images_per_class is None and "images_per_class" not in quick.as_dict()  # cache keys unchanged
    assert profiles.get_profile("full", images_per_class="5").images_per_class == 5
    assert profiles.get_profile(profiles.rehearsal(), images_per_class=None).images_per_class is None
    with pytest.raises(ValueError, match=r"'images_per_class' takes a whole number of at least 1 .*got 0"):
        profiles.get_profile("full", images_per_class=0)
    card = profiles.rehearsal().as_dict()
    assert profiles.Profile(**card) == profiles.rehearsal()


# --------------------------------------------------------------------------- data


def test_the_standin_has_kaggles_layout_names_sizes_rgb_files_and_ds_store(tmp_path):
    from pneumo_lib import data

    folder = standin.write_kaggle_standin(tmp_path / "standin", counts=SMALL)
    data.check_layout(folder)
    assert data.audit(folder).problems == []
    records = data.list_images(folder)
    for split, (n0, n1) in SMALL.items():
        assert sum(r.split == split and r.label == 0 for r in records) == n0
        assert sum(r.split == split and r.label == 1 for r in records) == n1
    assert sum(r.split == "val" for r in records) == 16  # Kaggle's 8 + 8
    names = [Path(r.path).name for r in records]
    normal = re.compile(r"^(NORMAL2-)?IM-\d{4}-\d{4}\.jpeg$")
    pneumonia = re.compile(r"^person\d+_(bacteria|virus)_\d+\.jpeg$")
    assert all((normal if r.label == 0 else pneumonia).match(n) for r, n in zip(records, names))
    assert any(n.startswith("NORMAL2-") for n in names) and any("_virus_" in n for n in names)
    widths, modes = [], []
    for r in records:
        with Image.open(folder / r.path) as im:
            assert im.format == "JPEG"
            widths.append(im.width)
            modes.append(im.mode)
    assert min(widths) == 400 and max(widths) == 2900
    assert 0 < modes.count("RGB") < len(modes) and "L" in modes
    stores = sorted(p.relative_to(folder).as_posix() for p in folder.rglob(".DS_Store"))
    assert ".DS_Store" in stores and "val/NORMAL/.DS_Store" in stores and len(stores) == 1 + 3 + 6
    assert not (folder.parent / "masks").exists()  # Kaggle has no lesion masks
    assert standin.is_standin(folder)
    again = _tree_hash(folder)
    assert standin.write_kaggle_standin(tmp_path / "standin", counts=SMALL) == folder
    assert _tree_hash(folder) == again  # reused, not rewritten


def test_standin_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a Kaggle stand-in"):
        standin.write_kaggle_standin(tmp_path / "mine", counts=SMALL)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="at least 1 image per class"):
        standin.write_kaggle_standin(tmp_path / "new", counts={"train": (0, 1)})


def test_an_existing_kaggle_folder_is_used_as_is_and_never_modified(tmp_path, home, monkeypatch):
    from pneumo_lib import data, rehearsal

    monkeypatch.setenv("PNEUMO_DATA", str(tmp_path / "data"))
    real = paths.dataset_dir("kaggle")
    source = standin.write_kaggle_standin(tmp_path / "elsewhere", counts=SMALL)
    import shutil

    shutil.copytree(source, real)  # a "download": no stand-in mark beside it
    before = _tree_hash(real.parent)
    folder, is_standin, env = rehearsal.choose_data()
    assert (folder, is_standin, env) == (real, False, {paths.KAGGLE_DIR_ENV: None})
    assert not standin.standin_root().exists()  # no stand-in written
    P = profiles.rehearsal()
    subset = data.ensure_dataset(dataclasses.replace(P, images_per_class=3))
    assert home in subset.parents and subset != real
    chosen = data.list_images(subset)
    for split in ("train", "val", "test"):
        for label in (0, 1):
            n = sum(r.split == split and r.label == label for r in data.list_images(real))
            assert sum(r.split == split and r.label == label for r in chosen) == min(3, n)
    for r in chosen:  # same names, same bytes
        assert (subset / r.path).read_bytes() == (real / r.path).read_bytes()
    assert data.ensure_dataset(dataclasses.replace(P, images_per_class=3)) == subset  # seeded, reused
    assert data.list_images(subset) == chosen
    assert _tree_hash(real.parent) == before
    # A download in the wrong layout: a clear message, nothing changed.
    (real / "test" / "NORMAL").rename(real / "test" / "normal-moved")
    broken = _tree_hash(real.parent)
    with pytest.raises(ValueError, match=r"not in the Kaggle layout: .*NORMAL"):
        rehearsal.choose_data()
    assert _tree_hash(real.parent) == broken
    # Without a download the stand-in goes under the home, never into the kaggle data folder.
    shutil.rmtree(real.parent)
    folder, is_standin, env = rehearsal.choose_data()
    assert is_standin and standin.standin_root() in folder.parents
    assert env == {paths.KAGGLE_DIR_ENV: str(folder)}
    assert not real.parent.exists()


# --------------------------------------------------------------------------- weights


def test_standin_weights_have_the_architecture_and_are_reported(tmp_path, monkeypatch):
    import warnings

    from pneumo_lib import models

    written = models.write_rehearsal_weights(tmp_path / "w", ("mobilenet_v2",), image_size=32)
    entry = written["mobilenet_v2"]
    assert entry.stand_in and entry.path.name == "mobilenet_v2.standin.weights.h5"
    assert "stand-in, not ImageNet" in entry.origin
    assert json.loads((tmp_path / "w" / models.LOCAL_WEIGHTS_INDEX).read_text())["mobilenet_v2"]["stand_in"]
    assert models.local_imagenet_weights("mobilenet_v2") is None  # not without the variable
    assert models.imagenet_weights_id("mobilenet_v2") == "imagenet"
    monkeypatch.setenv(models.IMAGENET_DIR_ENV, str(tmp_path / "w"))
    assert models.local_imagenet_weights("mobilenet_v2") == entry
    digest = hashlib.sha256(entry.path.read_bytes()).hexdigest()[:16]
    assert models.imagenet_weights_id("mobilenet_v2") == f"imagenet-standin:{digest}"  # cards and cache keys
    assert models.imagenet_weights_id("vgg16") == "imagenet"  # not listed: the usual ImageNet weights
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backbone = models.build_backbone("mobilenet_v2", 40, weights="imagenet")
    assert [w.category for w in caught if issubclass(w.category, models.StandInWeightsWarning)]
    reference = models.build_backbone("mobilenet_v2", 40, weights=str(entry.path))
    for a, b in zip(backbone.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(models.WeightsMismatchError, match="does not fit the vgg16 architecture"):
        models.build_backbone("vgg16", 40, weights=str(entry.path))
    with pytest.raises(ValueError, match="Not backbones: paper_cnn"):
        models.write_rehearsal_weights(tmp_path / "w", ("paper_cnn",))
    monkeypatch.setenv(models.IMAGENET_DIR_ENV, str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="has no weights.json"):
        models.build_backbone("mobilenet_v2", 40, weights="imagenet")


# --------------------------------------------------------------------------- one rehearsal


def test_a_rehearsal_runs_the_full_code_paths_on_the_standin(tiny_book, tmp_path, monkeypatch, home):
    from pneumo_lib import rehearsal

    monkeypatch.setattr(standin, "STANDIN_COUNTS", SMALL)
    monkeypatch.setattr(rehearsal, "prepare", functools.partial(rehearsal.prepare, backbones=("mobilenet_v2",)))
    before = _tree_hash(tiny_book / "book")
    lines: list[str] = []
    runs = book.run_book(["02"], profile="full", rehearse=True, root=tiny_book, out=tmp_path / "out",
                         echo=lines.append)
    assert _tree_hash(tiny_book / "book") == before
    cells = nbformat.read(runs[0].output, as_version=4).cells
    text = "".join(o.get("text", "") for o in cells[-1].outputs)
    n = profiles.REHEARSAL_SIZES["images_per_class"]
    assert f"full kaggle imagenet 72 1 {n}" in text
    assert f"{sum(min(n, k) for pair in SMALL.values() for k in pair)} True" in text
    assert "(None, 72, 72, 3)" in text
    assert "mobilenet_v2: ImageNet weights asked for, stand-in loaded" in text
    report = lines[-1]
    assert "profile full, rehearsal" in report
    assert "data: STAND-IN" in report and "weights mobilenet_v2: STAND-IN" in report
    estimate = report.split("Estimated full run on a Colab T4 (estimate, not measured):\n")[1].splitlines()
    assert estimate[1].split()[:3] == ["02_env", "0", "0.0"] and "assumptions: T4 sustained" in estimate[-1]
    assert [r["name"] for r in json.loads((tmp_path / "out" / "rehearsal-trainings.json").read_text())] == ["02_env"]
    assert not (home / "data" / "kaggle").exists()

    # Without the T4 estimate: nothing is measured, the trainings are still saved for the benchmark.
    from pneumo_lib import colab_estimate

    def no_measuring(*args, **kwargs):
        raise AssertionError("measure_cpu called with t4_estimate=False")

    monkeypatch.setattr(colab_estimate, "measure_cpu", no_measuring)
    lines.clear()
    book.run_book(["02"], profile="full", rehearse=True, root=tiny_book, out=tmp_path / "out2",
                  echo=lines.append, t4_estimate=False)
    saved = tmp_path / "out2" / "rehearsal-trainings.json"
    assert "not computed in this run (--no-t4-estimate)" in lines[-1] and f"{saved} --images " in lines[-1]
    assert [r["name"] for r in json.loads(saved.read_text())] == ["02_env"]
