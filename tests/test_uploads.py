"""Uploads: size limit, type check, private temporary files, and the same pixels from every format."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
from _upload_files import dicom_monochrome1, jpeg_bytes, png_bytes, rgba

from pneumo_lib import uploads
from pneumo_lib.uploads import Upload, UploadError

S = 32


@pytest.fixture(scope="module")
def gray8():
    """A 32x32 test card spanning the full 0..255 range (so DICOM min-max scaling is exact)."""
    ramp = np.linspace(0, 255, S * S).reshape(S, S)
    card = ramp.copy()
    card[8:16, 8:24] = 255 - card[8:16, 8:24]
    return card.round().astype(np.uint8)


@pytest.mark.parametrize("name, shown", [
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\me\\scan.png", "scan.png"),
    ("", "upload"),
    ("bad\x00name\n.jpg", "badname.jpg"),
    ("x" * 200 + ".png", "x" * 77 + "..."),
])
def test_display_names_keep_no_folders_or_control_characters(name, shown):
    assert uploads.display_name(name) == shown


def test_signatures_decide_the_type_before_the_name(gray8):
    assert uploads.sniff_suffix(png_bytes(gray8)) == ".png"
    assert uploads.sniff_suffix(jpeg_bytes(gray8)) == ".jpeg"
    assert uploads.sniff_suffix(dicom_monochrome1(gray8)) == ".dcm"
    assert uploads.sniff_suffix(b"Dear diary") is None


def test_stored_file_lives_in_a_fresh_private_temp_folder_under_a_fixed_name(gray8):
    upload = Upload("../../../../tmp/evil.jpg", png_bytes(gray8))  # PNG bytes, hostile name
    with uploads.stored(upload) as path:
        assert path.name == "upload.png"
        assert path.parent.parent == Path(tempfile.gettempdir())
        assert path.parent.name.startswith("pneumo-upload-")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert path.read_bytes() == upload.content
        folder = path.parent
    assert not folder.exists()


def test_size_limit_is_20_mb():
    assert uploads.MAX_UPLOAD_BYTES == 20 * 2**20
    with pytest.raises(UploadError, match=r"huge\.png is 20\.0 MB; the limit is 20 MB"):
        with uploads.stored(Upload("huge.png", b"\x89PNG\r\n\x1a\n" + bytes(uploads.MAX_UPLOAD_BYTES))):
            pass
    with uploads.stored(Upload("max.png", b"\x89PNG\r\n\x1a\n" + bytes(uploads.MAX_UPLOAD_BYTES - 8))) as path:
        assert path.stat().st_size == uploads.MAX_UPLOAD_BYTES


@pytest.mark.parametrize("name, content, message", [
    ("empty.png", b"", r"empty\.png is empty \(0 bytes\)"),
    ("notes.txt", b"hello", r"notes\.txt is not a JPEG, PNG or DICOM file"),
    ("notes.jpg", b"Dear diary,\n" * 40, r"notes\.jpg is not a readable image"),
])
def test_refused_uploads_name_the_upload_not_the_temp_path(name, content, message):
    with pytest.raises(UploadError, match=message) as err:
        uploads.read_upload(Upload(name, content), S)
    assert "pneumo-upload-" not in str(err.value)


def test_truncated_jpeg_is_refused_clearly(gray8):
    big = np.kron(gray8, np.ones((8, 8), np.uint8))  # 256 px, so a third of the file cuts pixels
    content = jpeg_bytes(big)
    with pytest.raises(UploadError, match=r"cut\.jpeg could not be decoded .*truncated"):
        uploads.read_upload(Upload("cut.jpeg", content[: len(content) // 3]), S)


def test_every_accepted_format_gives_the_same_model_input(gray8):
    expected = gray8.astype(np.float32)[..., None] / 255
    for name, content in {
        "scan.png": png_bytes(gray8),
        "scan16.png": png_bytes(gray8.astype(np.uint16) * 257),
        "scan-rgba.png": png_bytes(rgba(gray8)),
        "scan.dcm": dicom_monochrome1(gray8),
        "scan.dicom.bin": dicom_monochrome1(gray8),  # no useful suffix: found by its signature
    }.items():
        image = uploads.read_upload(Upload(name, content), S)
        assert image.shape == (S, S, 1) and image.dtype == np.float32, name
        np.testing.assert_allclose(image, expected, atol=1e-6, err_msg=name)


def test_three_channel_models_get_the_gray_image_repeated_and_resized(gray8):
    image = uploads.read_upload(Upload("scan.png", png_bytes(gray8)), 16, channels=3)
    assert image.shape == (16, 16, 3)
    assert np.array_equal(image[..., 0], image[..., 2])
    assert 0.0 <= image.min() and image.max() <= 1.0
    # The mean brightness survives an antialiased downscale.
    assert abs(float(image.mean()) - float(gray8.mean()) / 255) < 0.01


def test_upload_from_an_ipywidgets_8_value():
    value = ({"name": "../x/scan.png", "type": "image/png", "size": 3, "content": memoryview(b"abc"),
              "last_modified": 0},)
    assert Upload.from_widget(value) == Upload("scan.png", b"abc")
    assert Upload.from_widget(()) is None


# --- One preprocessing path: an upload is the same model input as the file read by the pipeline.

@pytest.fixture(scope="module")
def real_images():
    from pneumo_lib import data
    from pneumo_lib.data.sample import SampleError

    try:
        folder = data.ensure_sample()
    except SampleError as err:  # pragma: no cover - needs PyPI the first time
        pytest.skip(f"the 16 real images are not available here: {err}")
    return sorted((folder / "val").glob("*/*.jpeg"))


def _upload_matches_pipeline(files, sizes=(64, 224), channels=(1, 3)):
    from pneumo_lib import data

    worst = 0.0
    for size in sizes:
        for c in channels:
            batch = data.load_images(files, size, c)
            for f, want in zip(files, batch):
                got = uploads.read_upload(Upload(f.name, f.read_bytes()), size, c)
                assert got.shape == want.shape and got.dtype == np.float32
                worst = max(worst, float(np.abs(got - want).max()))
    assert worst <= 1 / 255, worst
    return worst


def test_uploads_of_the_16_real_images_equal_the_pipeline(real_images):
    assert len(real_images) == 16
    _upload_matches_pipeline(real_images)


def test_uploads_of_phantom_images_equal_the_pipeline(tmp_path):
    from _data_helpers import make_tiny

    from pneumo_lib.data import layout

    root = make_tiny(tmp_path / "ds")
    files = [root / r.path for r in layout.list_images(root)][::4]
    _upload_matches_pipeline(files, sizes=(32, 48, 96))  # shrinking and enlarging


def test_png_and_dicom_uploads_equal_the_pipeline(tmp_path, gray8):
    from _data_helpers import write_dicom

    big = np.kron(gray8, np.ones((4, 4), np.uint8))  # 128 px: shrinks to 64, grows to 224
    (tmp_path / "scan.png").write_bytes(png_bytes(big))
    (tmp_path / "scan16.png").write_bytes(png_bytes(big.astype(np.uint16) * 257))
    (tmp_path / "rgba.png").write_bytes(png_bytes(rgba(big)))
    write_dicom(tmp_path / "film.dcm", 4095 - 16 * big.astype(np.uint16), "MONOCHROME1")
    files = [tmp_path / n for n in ("scan.png", "scan16.png", "rgba.png", "film.dcm")]
    _upload_matches_pipeline(files)


# --- An upload that is not a chest X-ray says so.

def test_radiograph_check_passes_the_16_real_images(real_images):
    for f in real_images:
        assert uploads.upload_radiograph_check(Upload(f.name, f.read_bytes())) == [], f.name


def test_radiograph_check_passes_phantom_images(tmp_path):
    from pneumo_lib import data

    root = data.ensure_dataset("quick")  # the phantom the book uses (generated if absent)
    for f in sorted(root.glob("*/*/*.jpeg"))[::60]:
        assert uploads.upload_radiograph_check(Upload(f.name, f.read_bytes())) == [], f.name


def test_radiograph_check_names_what_is_wrong():
    rng = np.random.default_rng(0)
    one_pixel = uploads.radiograph_check(np.full((1, 1), 0.5, np.float32))
    assert len(one_pixel) == 1 and "too small for a radiograph (1x1 px" in one_pixel[0]
    noise = uploads.radiograph_check((rng.random((300, 300)) * 255).astype(np.uint8))
    assert any("looks like noise" in r for r in noise)
    # A colourful, photograph-like scene: sky, grass, a red ball.
    y, x = np.mgrid[0:240, 0:320]
    photo = np.zeros((240, 320, 3), np.uint8)
    photo[y < 120] = (90, 160, 235)
    photo[y >= 120] = (60, 170, 60)
    photo[(x - 160) ** 2 + (y - 150) ** 2 < 40 ** 2] = (220, 30, 30)
    reasons = uploads.radiograph_check(photo)
    assert any("in colour" in r for r in reasons)
    assert any("width/height" in r for r in uploads.radiograph_check(np.full((100, 400), 0.5)))
    assert any("brightness" in r for r in uploads.radiograph_check(np.zeros((200, 200))))
    assert uploads.radiograph_check(np.zeros((2, 3, 7))) != []


def test_upload_radiograph_check_reads_the_upload(gray8):
    tiny = uploads.upload_radiograph_check(Upload("icon.png", png_bytes(gray8)))  # 32 px
    assert any("too small for a radiograph (32x32 px" in r for r in tiny)
    with pytest.raises(UploadError, match=r"^x\.png is not a readable image"):
        uploads.upload_radiograph_check(Upload("x.png", b"hello"))
