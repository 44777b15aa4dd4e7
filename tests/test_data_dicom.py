"""DICOM as hospitals store it: every common compression decodes, one frame at most, clear errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _dicom_files import card, compressed, dataset
from pydicom.data import get_testdata_file

from pneumo_lib import data, uploads
from pneumo_lib.data import audit, images, pipeline
from pneumo_lib.uploads import Upload, UploadError

KINDS = ("rle", "jpeg-ls", "jpeg2000", "jpeg")


@pytest.fixture(scope="module")
def pixels():
    return card()


def _save(ds, path):
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_compressed_dicoms_decode_to_the_known_image(tmp_path, pixels, kind, photometric):
    f = _save(compressed(pixels, kind, photometric), tmp_path / f"{kind}.dcm")
    before = f.read_bytes()
    got = data.read_image(f)
    want = pixels.astype(np.float32) / 255
    if photometric == "MONOCHROME1":  # stored inverted: bone (high values) dark on the film
        want = 1 - want
    assert got.shape == pixels.shape and got.dtype == np.float32
    # Lossless syntaxes give the pixels back exactly; baseline JPEG within its quantisation.
    np.testing.assert_allclose(got, want, atol=0.03 if kind == "jpeg" else 1e-6)
    assert f.read_bytes() == before  # reading never changes the file


def test_jpeg_lossless_dicom_matches_the_rle_copy_of_the_same_image():
    # pydicom has no JPEG lossless encoder: its bundled test files hold one image both ways.
    lossless = data.read_image(get_testdata_file("SC_rgb_jpeg_gdcm.dcm"))  # process 14, SV1
    rle = data.read_image(get_testdata_file("SC_rgb_rle.dcm"))
    assert lossless.shape == (100, 100)
    np.testing.assert_array_equal(lossless, rle)


@pytest.mark.parametrize("kind", KINDS)
def test_compressed_dicom_uploads_equal_the_pipeline(tmp_path, pixels, kind):
    f = _save(compressed(pixels, kind), tmp_path / "scan.dcm")
    for size in (32, 96):  # shrinking (box filter) and enlarging (bilinear)
        up = uploads.read_upload(Upload("scan.dcm", f.read_bytes()), size)
        np.testing.assert_array_equal(up, data.load_images([f], size)[0])


def test_no_installed_plugin_names_the_syntax_and_the_package(tmp_path, pixels, monkeypatch):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    f = _save(compressed(pixels, "jpeg-ls"), tmp_path / "ls.dcm")
    decoder = get_decoder(JPEGLSLossless)
    monkeypatch.setattr(decoder, "_available", {})  # as if no plugin were installed
    assert not decoder.is_available
    pattern = r"ls\.dcm is compressed as JPEG-LS Lossless.*1\.2\.840\.10008\.1\.2\.4\.80.*install pylibjpeg-libjpeg"
    with pytest.raises(data.ImageReadError, match=pattern):
        data.read_image(f)
    with pytest.raises(data.ImageReadError, match=pattern):  # before any batch, not a traceback
        data.make_dataset([f], image_size=16)
    with pytest.raises(UploadError, match=r"^hospital\.dcm is compressed as JPEG-LS.*pylibjpeg-libjpeg"):
        uploads.read_upload(Upload("hospital.dcm", f.read_bytes()), 16)
    # The audit names it and goes on with the other files.
    root = tmp_path / "chest_xray"
    for split in data.SPLITS:
        for cls in data.CLASSES:
            (root / split / cls).mkdir(parents=True)
            _save(compressed(pixels, "rle"), root / split / cls / "IM-0001-0001.dcm")
    (root / "test" / "NORMAL" / "IM-0002-0001.dcm").write_bytes(f.read_bytes())
    report = audit(root)
    assert [p for p, _ in report.unreadable] == ["test/NORMAL/IM-0002-0001.dcm"]
    assert "pylibjpeg-libjpeg" in report.unreadable[0][1]
    assert report.counts["test"]["NORMAL"] == 1 and report.counts["train"]["PNEUMONIA"] == 1


@pytest.mark.parametrize("kind", ["rle", "jpeg2000"])
def test_truncated_compressed_data_is_a_one_line_error_naming_the_file(tmp_path, pixels, kind):
    from pydicom.encaps import encapsulate, generate_frames

    ds = compressed(pixels, kind)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: len(frame) // 2]])  # the code stream cut in half
    f = _save(ds, tmp_path / "broken.dcm")
    with pytest.raises(data.ImageReadError, match=r"broken\.dcm could not be decoded") as err:
        data.read_image(f)
    assert "\n" not in str(err.value)
    with pytest.raises(UploadError, match=r"^scan\.dcm could not be decoded"):
        uploads.read_upload(Upload("scan.dcm", f.read_bytes()), 16)
    (tmp_path / "half.dcm").write_bytes(f.read_bytes()[:300])  # the file itself cut short
    with pytest.raises(data.ImageReadError, match=r"half\.dcm"):
        data.read_image(tmp_path / "half.dcm")


def test_multi_frame_dicom_gives_its_first_frame_with_a_warning(tmp_path, pixels):
    frames = np.stack([pixels, 255 - pixels, pixels // 2])
    f = _save(compressed(frames, "rle"), tmp_path / "series.dcm")
    with pytest.warns(data.FramesWarning, match=r"series\.dcm holds 3 frames; only the first is used"):
        got = data.read_image(f)
    np.testing.assert_allclose(got, pixels / 255, atol=1e-6)
    with pytest.warns(data.FramesWarning, match=r"^scan\.dcm holds 3 frames"):
        uploads.read_upload(Upload("scan.dcm", f.read_bytes()), 16)


def test_the_pixel_limit_counts_frames(tmp_path, pixels):
    frames = np.stack([pixels] * 4)  # 4 x 48 x 64 = 12,288 pixels
    f = _save(compressed(frames, "rle"), tmp_path / "series.dcm")
    limit = 3 * pixels.size
    with pytest.raises(data.ImageReadError, match=r"series\.dcm is too large \(64x48 pixels x 4 frames"):
        data.read_image(f, max_pixels=limit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.FramesWarning)
        assert data.read_image(f, max_pixels=4 * pixels.size).shape == pixels.shape
    with pytest.raises(data.ImageReadError, match=r"series\.dcm is too large"):
        images.dicom_header(f, max_pixels=limit)
    with pytest.raises(data.ImageReadError, match=r"series\.dcm is too large"):
        pipeline._inspect(f, 16, max_pixels=limit)


def test_uncompressed_and_16_bit_dicoms_still_read(tmp_path, pixels):
    f = _save(dataset(pixels), tmp_path / "plain.dcm")
    np.testing.assert_allclose(data.read_image(f), pixels / 255, atol=1e-6)
    for name in ("MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"):
        np.testing.assert_allclose(data.read_image(get_testdata_file(name)),
                                   data.read_image(get_testdata_file("MR_small.dcm")), atol=1e-6, err_msg=name)
