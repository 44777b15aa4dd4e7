"""The tf.data pipeline and array loaders: shapes, ranges, order, masks aligned with lesions."""

from __future__ import annotations

import numpy as np
import pytest
from _data_helpers import make_tiny, tree_digest, write_dicom
from PIL import Image

from pneumo_lib import data
from pneumo_lib.data import pipeline


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_tiny(tmp_path_factory.mktemp("pipe") / "ds", seed=2, size=96)


@pytest.fixture(scope="module")
def manifest(ds):
    return data.make_splits(ds, seed=0, save=False)


def test_batches_have_the_promised_shapes_ranges_and_labels(manifest):
    paths, labels = manifest.paths("train"), manifest.labels("train")
    batches = list(data.make_dataset(paths, labels, image_size=32, batch_size=5))
    assert [len(y) for _, y in batches][:-1] == [5] * (len(batches) - 1)
    x = np.concatenate([b[0].numpy() for b in batches])
    y = np.concatenate([b[1].numpy() for b in batches])
    assert x.shape == (len(paths), 32, 32, 1) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.05
    np.testing.assert_array_equal(y, labels.astype(np.float32))  # unshuffled: manifest order


def test_three_channels_repeat_the_gray_image_and_arrays_match_the_pipeline(manifest):
    paths = manifest.paths("test")
    gray = data.load_images(paths, 40)
    rgb = data.load_images(paths, 40, channels=3)
    assert rgb.shape == gray.shape[:3] + (3,)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], gray[..., 0])
    x, y = data.load_split(manifest, "test", 40)
    np.testing.assert_array_equal(x, gray)
    np.testing.assert_array_equal(y, manifest.labels("test").astype(np.float32))
    # The same pixels a PIL-free check gives: the mean of a flat region survives resizing.
    direct = data.read_image(paths[0])
    assert abs(float(gray[0].mean()) - float(direct.mean())) < 0.02


def test_shuffle_is_seeded_and_reshuffles_each_epoch(manifest):
    paths, labels = manifest.paths("train"), manifest.labels("train")

    def order(seed):
        d = data.make_dataset(paths, np.arange(len(paths)), image_size=16, batch_size=64, shuffle=True, seed=seed)
        return [np.concatenate([y.numpy() for _, y in d]) for _ in range(2)]

    a, b = order(1), order(1)
    np.testing.assert_array_equal(a[0], b[0])
    assert sorted(a[0]) == list(range(len(paths)))
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(a[0], order(2)[0])


@pytest.mark.parametrize("cache", [True, False])
def test_shuffled_images_stay_with_their_labels_cached_or_streamed(manifest, cache):
    paths = manifest.paths("train")
    plain = data.load_images(paths, 16)
    d = data.make_dataset(paths, np.arange(len(paths)), image_size=16, batch_size=7, shuffle=True,
                          seed=4, cache=cache)
    batches = list(d)  # one epoch: every iteration reshuffles
    x = np.concatenate([b[0].numpy() for b in batches])
    idx = np.concatenate([b[1].numpy() for b in batches]).astype(int)
    assert sorted(idx) == list(range(len(paths))) and list(idx) != sorted(idx)
    np.testing.assert_array_equal(x, plain[idx])


def test_augmentation_changes_pixels_keeps_range_and_labels(manifest):
    paths, labels = manifest.paths("train")[:8], manifest.labels("train")[:8]
    plain = next(iter(data.make_dataset(paths, labels, image_size=32, batch_size=8)))
    aug = next(iter(data.make_dataset(paths, labels, image_size=32, batch_size=8, augment=True, seed=3)))
    np.testing.assert_array_equal(plain[1].numpy(), aug[1].numpy())
    xa = aug[0].numpy()
    assert 0.0 <= xa.min() and xa.max() <= 1.0
    assert np.abs(xa - plain[0].numpy()).mean() > 0.01


def test_augmented_shuffled_epochs_repeat_bit_for_bit(manifest):
    """Small batches give the augmentation many calls per epoch; drawn in parallel they would
    take the seed generator's draws in a racy order and differ between two runs."""
    paths, labels = manifest.paths("train"), manifest.labels("train")

    def two_epochs():
        d = data.make_dataset(paths, labels, image_size=24, batch_size=2, augment=True, shuffle=True, seed=5)
        return [np.concatenate([x.numpy() for x, _ in d]) for _ in range(2)]

    a, b = two_epochs(), two_epochs()
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1])  # each epoch is augmented anew


def test_masks_sit_on_the_lesions(manifest):
    paths = manifest.paths("train")
    labels = manifest.labels("train")
    masks = data.load_masks(paths, 48)
    assert masks.shape == (len(paths), 48, 48)
    assert set(np.unique(masks)) <= {0.0, 1.0}
    assert masks[labels == 0].sum() == 0 and (masks[labels == 1].sum(axis=(1, 2)) > 0).all()
    # Lesions are opacities: brighter under the mask than the lungs' average elsewhere.
    x = data.load_images(paths, 48)[..., 0]
    for img, m in zip(x[labels == 1], masks[labels == 1]):
        assert img[m > 0].mean() > img[(m == 0)].mean() - 0.05


def test_marker_masks_follow_the_recorded_boxes(tmp_path):
    ds = make_tiny(tmp_path / "sc", seed=2, size=96, shortcut=True,
                   counts={"train": (4, 10), "val": (1, 1), "test": (2, 2)})
    boxes = data.marker_boxes(ds)
    paths = sorted((ds / "train" / "PNEUMONIA").glob("*.jpeg"))
    masks = data.load_marker_masks(paths, 48)
    x = data.load_images(paths, 48)[..., 0]
    for p, m, img in zip(paths, masks, x):
        if f"train/PNEUMONIA/{p.name}" in boxes:
            assert m.sum() >= 4 and img[m > 0].max() > 0.8
        else:
            assert m.sum() == 0
    assert data.load_marker_masks(sorted((ds / "test" / "PNEUMONIA").glob("*.jpeg")), 48).sum() == 0


def test_pasted_markers_change_only_the_marker_pixels_and_match_a_marked_image(tmp_path):
    ds = make_tiny(tmp_path / "sc", seed=2, size=96, shortcut=True,
                   counts={"train": (4, 6), "val": (2, 3), "test": (2, 4)})
    tests = sorted((ds / "test" / "PNEUMONIA").glob("*.jpeg"))
    plain = data.load_images(tests, 48, channels=3)
    before = tree_digest(ds)
    pasted, masks = data.paste_markers(plain, ds)
    assert tree_digest(ds) == before
    assert pasted.shape == plain.shape and masks.shape == plain.shape[:3] and pasted.dtype == np.float32
    donors = sorted(p for p in data.marker_boxes(ds) if p.startswith("val/PNEUMONIA/"))
    assert len(donors) == 3  # every val PNEUMONIA image is marked; the three are cycled
    donor_x = data.load_images([ds / donors[0]], 48, channels=3)[0]
    donor_m = data.load_marker_masks([ds / donors[0]], 48)[0]
    np.testing.assert_array_equal(masks[0], donor_m)
    inside = masks[0] > 0
    assert inside.sum() >= 4
    np.testing.assert_array_equal(pasted[0][inside], donor_x[inside])  # the marker's own pixels
    np.testing.assert_array_equal(pasted[0][~inside], plain[0][~inside])  # everything else untouched
    assert pasted[0][inside].max() > 0.8  # the bright ring
    np.testing.assert_array_equal(masks[len(donors)], masks[0])  # image 3 reuses donor 0
    empty, no_masks = data.paste_markers(plain[:0], ds)
    assert empty.shape == (0, 48, 48, 3) and no_masks.shape == (0, 48, 48)
    with pytest.raises(ValueError, match="no val PNEUMONIA image with a marker"):
        data.paste_markers(plain, make_tiny(tmp_path / "plain", seed=2, size=96))
    with pytest.raises(ValueError, match=r"must be a batch \(N, S, S, C\)"):
        data.paste_markers(plain[0], ds)


def test_masks_of_non_phantom_pneumonia_images_are_refused(tmp_path):
    folder = tmp_path / "chest_xray" / "test" / "PNEUMONIA"
    folder.mkdir(parents=True)
    Image.new("L", (20, 20), 100).save(folder / "person1_virus_1.jpeg")
    with pytest.raises(FileNotFoundError, match="person1_virus_1.*phantom data"):
        data.load_masks([folder / "person1_virus_1.jpeg"], 16)


def test_cmyk_dicom_and_16_bit_png_go_through_the_pipeline(tmp_path):
    flat = np.full((24, 24, 3), 128, np.uint8)
    Image.fromarray(flat).convert("CMYK").save(tmp_path / "cmyk file.jpeg", quality=95)
    Image.fromarray(np.full((24, 24), 32768, np.uint16)).save(tmp_path / "g16.png")
    pixels = np.zeros((24, 24), np.uint16)
    pixels[:, 12:] = 4000  # right half dense: dark on MONOCHROME1 film
    write_dicom(tmp_path / "film.dcm", pixels, "MONOCHROME1")
    files = [tmp_path / "cmyk file.jpeg", tmp_path / "g16.png", tmp_path / "film.dcm"]
    assert [pipeline.needs_python(f) for f in files] == [True, False, True]
    assert [pipeline.decode_plan(f, 8) for f in files] == [pipeline.PYTHON, pipeline.GENERIC, pipeline.PYTHON]
    x = data.load_images(files, 8)
    assert abs(x[0].mean() - 128 / 255) < 0.02
    assert abs(x[1].mean() - 0.5) < 0.01
    assert x[2][:, :3].min() > 0.99 and x[2][:, -3:].max() < 0.01


def test_unreadable_file_is_named_before_any_batch(tmp_path):
    (tmp_path / "bad.jpeg").write_bytes(b"")
    with pytest.raises(data.ImageReadError, match="bad.jpeg"):
        data.make_dataset([tmp_path / "bad.jpeg"], image_size=8)


@pytest.mark.parametrize("kwargs, message", [
    ({"channels": 2}, "channels must be 1"),
    ({"aspect": "squash"}, "aspect must be one of"),
    ({"image_size": 4}, "at least 8"),
])
def test_bad_arguments(manifest, kwargs, message):
    args = {"image_size": 16, **kwargs}
    with pytest.raises(ValueError, match=message):
        data.make_dataset(manifest.paths("test"), **args)


def test_large_jpegs_are_decoded_at_a_reduced_scale_with_the_same_result(tmp_path):
    rng = np.random.default_rng(0)
    smooth = np.asarray(Image.fromarray((rng.random((25, 20)) * 255).astype(np.uint8)).resize((400, 320)))
    Image.fromarray(smooth).save(tmp_path / "big.jpeg", quality=95)
    f = tmp_path / "big.jpeg"
    assert pipeline.decode_plan(f, 40) == pipeline.JPEG_FULL + 3  # 320 / 8 = 40
    assert pipeline.decode_plan(f, 41) == pipeline.JPEG_FULL + 2
    assert pipeline.decode_plan(f, 400) == pipeline.JPEG_FULL
    reduced = data.load_images([f], 40)[0]
    full = pipeline.resize(pipeline.decode(str(f), pipeline.JPEG_FULL), 40, method="area").numpy()
    assert np.abs(reduced - full).mean() < 0.01  # both shrink, so the pipeline used the box filter


def test_the_box_filter_is_chosen_per_image_when_it_shrinks(tmp_path):
    rng = np.random.default_rng(1)
    stripes = np.tile(np.array([0, 255], np.uint8), 100)[None, :].repeat(200, 0)  # 1 px stripes
    Image.fromarray(stripes).save(tmp_path / "stripes.png")
    Image.fromarray((rng.random((70, 76)) * 255).astype(np.uint8)).save(tmp_path / "near.png")
    Image.fromarray((rng.random((40, 40)) * 255).astype(np.uint8)).save(tmp_path / "small.png")

    def through_pipeline(*names):
        files = [tmp_path / n for n in names]
        return np.concatenate([b.numpy() for b in data.make_dataset(files, image_size=64, cache=False)])

    def reference(name, method):
        return pipeline.resize(pipeline.decode(str(tmp_path / name)), 64, method=method).numpy()

    # Every image shrinks: the box filter, which averages the stripes to flat grey
    # (plain bilinear would alias them into a strong pattern).
    shrunk = through_pipeline("near.png", "stripes.png")
    np.testing.assert_allclose(shrunk[0], reference("near.png", "area"), atol=1e-6)
    np.testing.assert_allclose(shrunk[1], reference("stripes.png", "area"), atol=1e-6)
    plain = tf_resize_plain(tmp_path / "stripes.png")
    assert shrunk[1].std() < 0.4 * plain.std()
    assert np.abs(reference("near.png", "area") - reference("near.png", "bilinear")).mean() < 0.06
    # One image must be enlarged: it alone goes through antialiased bilinear; the
    # other keeps the box filter, so an image's pixels never depend on its neighbours.
    mixed = through_pipeline("near.png", "small.png")
    np.testing.assert_allclose(mixed[0], reference("near.png", "area"), atol=1e-6)
    np.testing.assert_allclose(mixed[1], reference("small.png", "bilinear"), atol=1e-6)
    np.testing.assert_allclose(through_pipeline("small.png")[0], mixed[1], atol=1e-6)
    assert pipeline.resize_method(70, 64) == "area" and pipeline.resize_method(63, 64) == "bilinear"
    assert pipeline.resize_method(None, 64) == "bilinear"
    with pytest.raises(ValueError, match="method must be 'bilinear' or 'area', got 'cubic'"):
        pipeline.resize(pipeline.decode(str(tmp_path / "near.png")), 64, method="cubic")


def tf_resize_plain(file):
    from pneumo_lib._tf import tf

    return tf.image.resize(pipeline.decode(str(file)), [64, 64], antialias=False).numpy()


def _exif_with_description(text: str) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010E] = text  # ImageDescription: a long segment before the frame header
    return exif


def test_the_quick_header_reader_agrees_with_pillow(tmp_path):
    rng = np.random.default_rng(3)
    gray = (rng.random((70, 90)) * 255).astype(np.uint8)
    rgb = (rng.random((50, 40, 3)) * 255).astype(np.uint8)
    files = {
        "gray.jpeg": lambda f: Image.fromarray(gray).save(f, quality=90),
        "progressive.jpeg": lambda f: Image.fromarray(gray).save(f, progressive=True),
        "rgb.jpg": lambda f: Image.fromarray(rgb).save(f),
        "cmyk.jpeg": lambda f: Image.fromarray(rgb).convert("CMYK").save(f),
        "exif.jpeg": lambda f: Image.fromarray(gray).save(f, exif=_exif_with_description("x" * 3000)),
        "gray.png": lambda f: Image.fromarray(gray).save(f),
        "gray16.png": lambda f: Image.fromarray(gray.astype(np.uint16) * 257).save(f),
        "rgba.png": lambda f: Image.fromarray(rgb).convert("RGBA").save(f),
        "palette.png": lambda f: Image.fromarray(rgb).convert("P").save(f),
        "png_named.jpeg": lambda f: Image.fromarray(gray).save(f, format="PNG"),
        "image.bmp": lambda f: Image.fromarray(gray).save(f),
    }
    for name, write in files.items():
        write(tmp_path / name)
    for name in files:
        with Image.open(tmp_path / name) as im:
            want_format, want_size, bands = im.format, im.size, len(im.getbands())
        quick = pipeline._quick_header(tmp_path / name)
        if want_format in ("JPEG", "PNG"):
            assert quick is not None and quick[0] == want_format and quick[2:] == want_size, name
            assert quick[1] == bands or (want_format == "PNG" and im.mode == "P"), name
        else:
            assert quick is None, name
    # The plan is the one Pillow's header gives: CMYK and BMP need Python, PNG the generic decoder.
    assert pipeline.decode_plan(tmp_path / "cmyk.jpeg") == pipeline.PYTHON
    assert pipeline.decode_plan(tmp_path / "image.bmp") == pipeline.PYTHON
    assert pipeline.decode_plan(tmp_path / "png_named.jpeg") == pipeline.GENERIC
    assert pipeline.decode_plan(tmp_path / "gray.jpeg", 35) == pipeline.JPEG_FULL + 1  # 70 / 2 = 35
    assert pipeline.decode_plan(tmp_path / "gray.jpeg", 36) == pipeline.JPEG_FULL
    # Bytes that only start like a JPEG go to Pillow, whose error names the file.
    (tmp_path / "fake.jpeg").write_bytes(b"\xff\xd8\xff\xda" + bytes(100))
    assert pipeline._quick_header(tmp_path / "fake.jpeg") is None
    with pytest.raises(data.ImageReadError, match="fake.jpeg is not a readable image"):
        pipeline.decode_plan(tmp_path / "fake.jpeg")


def test_aspect_modes_on_a_wide_image(tmp_path):
    wide = np.zeros((20, 40), np.uint8)
    wide[:, 10:30] = 255  # a white centre square between black side bands
    Image.fromarray(wide).save(tmp_path / "wide.png")
    f = [tmp_path / "wide.png"]
    stretch = data.load_images(f, 20, aspect="stretch")[0, ..., 0]
    pad = data.load_images(f, 20, aspect="pad")[0, ..., 0]
    crop = data.load_images(f, 20, aspect="crop")[0, ..., 0]
    assert stretch[:, 8:12].min() > 0.99 and stretch[:, :3].max() < 0.01  # bands squeezed
    assert pad[:4].max() == 0 and pad[-4:].max() == 0 and pad[10, 8:12].min() > 0.99  # letterboxed
    assert crop.min() > 0.99  # the centre square only


def test_reading_changes_nothing(ds, manifest):
    before = tree_digest(ds.parent)
    data.load_images(manifest.paths("test"), 24)
    data.load_masks(manifest.paths("test"), 24)
    list(data.split_dataset(manifest, "train", "quick"))
    assert tree_digest(ds.parent) == before


def test_split_dataset_uses_the_profile(manifest):
    d = data.split_dataset(manifest, "train", "quick", shuffle=False, augment=False)
    x, y = next(iter(d))
    assert x.shape[1:] == (64, 64, 1) and x.shape[0] == min(32, len(manifest.paths("train")))
    weights = data.class_weights(manifest.labels("train"))
    n = len(manifest.labels("train"))
    assert weights[1] == pytest.approx(n / (2 * manifest.labels("train").sum()))


def test_dataset_below_a_path_with_spaces_and_non_ascii_letters(tmp_path):
    ds = make_tiny(tmp_path / "Röntgen Daten ü" / "ds", seed=1, size=40)
    m = data.make_splits(ds, seed=0, save=False)
    x, y = data.load_split(m, "test", 16)
    assert x.shape == (8, 16, 16, 1) and y.tolist() == [0.0] * 3 + [1.0] * 5
    assert data.audit(ds).ok
