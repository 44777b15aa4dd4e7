"""read_image: every supported format gives known values; bad files give errors naming them."""

from __future__ import annotations

import numpy as np
import pytest
from _data_helpers import write_dicom
from PIL import Image

from pneumo_lib.data.images import ImageReadError, read_image

RAMP = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (4, 1))  # (4, 16), values 0..240


def test_grayscale_png_is_exact(tmp_path):
    Image.fromarray(RAMP, "L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.dtype == np.float32 and out.shape == (4, 16)
    np.testing.assert_array_equal(out, RAMP.astype(np.float32) / 255)


def test_16_bit_png_keeps_its_precision(tmp_path):
    values = np.array([[0, 1, 257, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    np.testing.assert_allclose(read_image(tmp_path / "g16.png"), values / 65535.0, atol=1e-7)


def test_rgb_rgba_and_palette_give_the_luma(tmp_path):
    rgb = np.stack([RAMP, RAMP, RAMP], axis=-1)
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    rgba = np.concatenate([rgb, np.full(RAMP.shape + (1,), 7, np.uint8)], axis=-1)  # alpha ignored
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(RAMP, "L").convert("P").save(tmp_path / "pal.png")
    for name in ("rgb.png", "rgba.png", "pal.png"):
        np.testing.assert_allclose(read_image(tmp_path / name), RAMP / 255.0, atol=1 / 255, err_msg=name)


def test_rgb_and_cmyk_jpeg(tmp_path):
    flat = np.full((32, 32, 3), 200, np.uint8)
    Image.fromarray(flat).save(tmp_path / "rgb.jpeg", quality=95)
    Image.fromarray(flat).convert("CMYK").save(tmp_path / "cmyk.jpeg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpeg").mode == "CMYK"
    for name in ("rgb.jpeg", "cmyk.jpeg"):
        np.testing.assert_allclose(read_image(tmp_path / name), 200 / 255, atol=3 / 255, err_msg=name)


def test_dicom_monochrome2_and_monochrome1(tmp_path):
    pixels = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    write_dicom(tmp_path / "m2.dcm", pixels, "MONOCHROME2", slope=2.0, intercept=-100)
    write_dicom(tmp_path / "m1.dcm", pixels, "MONOCHROME1")
    expected = pixels / 4000.0  # rescale is linear, so min-max scaling gives the same fractions
    np.testing.assert_allclose(read_image(tmp_path / "m2.dcm"), expected, atol=1e-6)
    # MONOCHROME1 stores bone dark: it is inverted so that bone is bright everywhere.
    np.testing.assert_allclose(read_image(tmp_path / "m1.dcm"), 1 - expected, atol=1e-6)


def test_paths_with_spaces_and_non_ascii_letters(tmp_path):
    folder = tmp_path / "Röntgen Bilder" / "çà"
    folder.mkdir(parents=True)
    Image.fromarray(RAMP, "L").save(folder / "ß image.png")
    np.testing.assert_array_equal(read_image(folder / "ß image.png"), RAMP.astype(np.float32) / 255)


@pytest.mark.parametrize("case", ["empty", "truncated", "text", "dicom_garbage"])
def test_bad_files_raise_an_error_naming_the_file_and_stay_unchanged(tmp_path, case):
    good = tmp_path / "good.jpeg"
    Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)).save(good)
    name, data = {
        "empty": ("empty.jpeg", b""),
        "truncated": ("cut.jpeg", good.read_bytes()[: good.stat().st_size // 2]),
        "text": ("notes.png", b"this is not a picture"),
        "dicom_garbage": ("scan.dcm", b"DICM" * 10),
    }[case]
    bad = tmp_path / name
    bad.write_bytes(data)
    with pytest.raises(ImageReadError, match=name):
        read_image(bad)
    assert bad.read_bytes() == data


def test_huge_image_is_refused_by_its_header(tmp_path):
    Image.new("1", (12_000, 12_000)).save(tmp_path / "huge.png")  # 144 MP, tiny file
    with pytest.raises(ImageReadError, match=r"huge\.png is too large"):
        read_image(tmp_path / "huge.png")
    Image.new("1", (100, 50)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match=r"big\.png is too large \(100x50 pixels"):
        read_image(tmp_path / "big.png", max_pixels=4_999)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        read_image(tmp_path / "nothing.png")
