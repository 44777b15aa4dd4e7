"""``pneumo serve``: the upload-and-explain web app (see :mod:`pneumo_lib.app`)."""

from __future__ import annotations

import argparse

from pneumo_lib import app, pretrained


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the upload-and-explain web app (Voila)",
        description=(
            "Serve a page where a chest X-ray (JPEG, PNG or DICOM, up to 20 MB) is uploaded "
            "and answered with the prediction, its probability and a Grad-CAM overlay. "
            "Without --model it serves the Xception classifier trained on the real Kaggle X-rays "
            f"({pretrained.PACKAGE}, fetched with pip once and SHA-256 checked); when that cannot be "
            "had it says so in one line and serves the quick-profile scratch CNN trained on generated "
            "phantom images, whose page then warns that its answers on real X-rays mean nothing."
        ),
    )
    parser.add_argument("--model", default=None, metavar="PATH",
                        help="a .keras model file, or 'reference' (the real-data Xception classifier) or "
                        "'phantom' (the quick-profile scratch CNN); default: reference if it can be had, "
                        "else phantom")
    parser.add_argument("--preprocess", default=None, metavar="NAME",
                        help="for --model PATH: how [0, 1] images become its input: unit (unchanged), "
                        "tf ([-1, 1], keras xception preprocess_input), caffe (VGG/ResNet), torch (DenseNet), "
                        "or an architecture name such as xception (default: the model card's 'preprocess', "
                        "else unit)")
    parser.add_argument("--input-size", type=int, default=None, metavar="N",
                        help="for --model PATH taking images of any size: the side in pixels "
                        "(default: the model's own, else its card's 'input_size')")
    parser.add_argument("--port", type=int, default=app.DEFAULT_PORT, metavar="N",
                        help=f"TCP port (default: {app.DEFAULT_PORT})")
    parser.add_argument("--host", default="127.0.0.1", metavar="ADDR",
                        help="address to bind (default: 127.0.0.1, this machine only; "
                        "0.0.0.0 inside a container)")
    parser.add_argument("--max-kernels", type=int, default=None, metavar="N",
                        help="visitors served at once, one kernel (about 0.8 GB) each; one more gets a "
                        f"'busy, try again' page (default: memory / {app.KERNEL_MB} MB, here "
                        f"{app.default_max_kernels()})")
    parser.add_argument("--idle-timeout", type=float, default=app.DEFAULT_IDLE_SECONDS, metavar="S",
                        help="end a visitor's kernel after this many seconds without activity "
                        f"(default {app.DEFAULT_IDLE_SECONDS}); closing the tab ends it at once")
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    app.serve(args.model, preprocess=args.preprocess, input_size=args.input_size, host=args.host, port=args.port, max_kernels=args.max_kernels,
              idle_seconds=args.idle_timeout)
    return 0
