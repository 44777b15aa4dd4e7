"""Peak memory of decoding the largest multi-frame DICOM the library accepts, in `audit` and in an upload.

Run: ``.venv/bin/python benchmarks/decode_memory.py [--frames 10] [--side 2000]``

Writes one RLE-compressed 16-bit DICOM of ``frames x side x side`` pixels (by default 10 frames
of 2,000 x 2,000: exactly :data:`pneumo_lib.data.images.MAX_PIXELS`, 40 million pixels, the
largest the pixel limit lets through) into a Kaggle-layout folder, then measures in fresh child
processes, side by side:

* ``baseline``: the same imports and nothing decoded (what any of these processes costs), and
  ``baseline, TensorFlow``: the same with TensorFlow loaded, as the upload path loads it;
* ``audit``: :func:`pneumo_lib.data.audit` over the folder (what ``pneumo data audit`` runs);
* ``upload``: :func:`pneumo_lib.uploads.read_upload` on the file's bytes at 64 px (what the app
  runs for an upload; the app's 20 MB limit is on the file, and RLE keeps this one far below it);
* ``upload, one frame``: the same for a single-frame file of one such frame, for comparison.

Each child reports its peak resident memory (``ru_maxrss``); the table prints it and the
increase over its baseline (the uploads over the TensorFlow one). A multi-frame file is decoded to its first frame only, as float32
(a ``FramesWarning`` says so), so the increase should be near one frame's size, not all frames'.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, warnings
from pathlib import Path
import numpy as np
from pneumo_lib import data, uploads
mode, file = sys.argv[1], Path(sys.argv[2])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    if mode == "audit":
        report = data.audit(file.parents[3], splits=("val",))
        detail = f"audited: {report.counts}"
    elif mode.startswith("upload"):
        x = uploads.read_upload(uploads.Upload(file.name, file.read_bytes()), 64)
        detail = f"input {x.shape} {x.dtype}"
    elif mode == "baseline, TensorFlow":
        from pneumo_lib import _tf  # noqa: F401  (the upload path imports TensorFlow to resize)
        import tensorflow as tf
        tf.image.resize(np.zeros((1, 8, 8, 1), np.float32), (4, 4))
        detail = "imports and TensorFlow, nothing decoded"
    else:
        detail = "imports only"
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"mode": mode, "peak_mib": peak_mib, "detail": detail,
                  "warnings": sorted({type(w.message).__name__ for w in caught})}))
"""


def write_dicom(path: Path, frames: int, side: int) -> None:
    """An RLE-compressed MONOCHROME2 16-bit DICOM of ``frames`` blocky ``side x side`` frames.

    The frames are 50-pixel tiles of constant gray, which run-length encoding stores in a few
    MiB: a file that passes the app's 20 MB upload limit while holding 40 million pixels.
    """
    import numpy as np
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

    y, x = np.mgrid[0:side, 0:side]
    frame = (1000 + 40 * (x // 50 + y // 50)).astype(np.uint16)
    pixels = np.stack([frame + k for k in range(frames)])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.NumberOfFrames, ds.Rows, ds.Columns = frames, side, side
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    ds.compress(RLELossless)
    ds.save_as(path, enforce_file_format=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--side", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "chest_xray" / "val" / "NORMAL" / "IM-0001-0001.dcm"
        file.parent.mkdir(parents=True)
        (Path(tmp) / "chest_xray" / "val" / "PNEUMONIA").mkdir()
        write_dicom(file, args.frames, args.side)
        single = Path(tmp) / "single.dcm"
        write_dicom(single, 1, args.side)
        print(f"{file.name}: {args.frames} frames of {args.side} x {args.side} "
              f"({args.frames * args.side ** 2 / 1e6:.0f} million pixels), {file.stat().st_size / 2**20:.1f} MiB on disk")
        rows = {}
        for mode in ("baseline", "audit", "baseline, TensorFlow", "upload", "upload, one frame"):
            target = single if mode == "upload, one frame" else file
            out = subprocess.run([sys.executable, "-c", CHILD, mode, str(target)], capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"{mode} failed:\n{out.stderr[-2000:]}")
            rows[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\n{'process':<22}{'peak MiB':>10}{'over baseline':>15}  detail")
    for mode, row in rows.items():
        base = rows["baseline, TensorFlow" if mode.startswith("upload") else "baseline"]["peak_mib"]
        extra = "" if mode.startswith("baseline") else f"{row['peak_mib'] - base:>+15.0f}"
        print(f"{mode:<22}{row['peak_mib']:>10.0f}{extra:>15}  {row['detail']}; "
              f"warnings: {', '.join(row['warnings']) or '-'}")
    print(f"\none frame as float32: {args.side ** 2 * 4 / 2**20:.0f} MiB; all frames as float64 (the old path): "
          f"{args.frames * args.side ** 2 * 8 / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
