"""``pneumo explain MODEL IMAGE... --method M --out DIR``: heatmap overlays and one JSON line per image."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="explain a model's predictions with Grad-CAM, Grad-CAM++ or Score-CAM",
        description=(
            "Write an overlay PNG per image into --out and print one JSON line per image "
            "(prediction, probability, threshold, method, layer); the lines are also written to "
            "DIR/explanations.jsonl (afresh on each run; --append keeps earlier lines). The "
            "prediction follows the project's rule: PNEUMONIA when P(PNEUMONIA) >= the model "
            "card's validation threshold (else 0.5), or --threshold; a three-class model "
            "(NORMAL, bacterial, viral) predicts the class with the largest probability."
        ),
    )
    parser.add_argument("model", help="a .keras model file (loaded in Keras safe mode)")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG, PNG or DICOM files")
    parser.add_argument("--method", choices=("gradcam", "gradcampp", "scorecam"), default="gradcam")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--layer", default=None, help="target layer (default: found automatically)")
    parser.add_argument(
        "--class-index", type=int, choices=(0, 1, 2), default=None,
        help="explain NORMAL (0) or PNEUMONIA (1) instead of the predicted class; for a three-class "
             "model 0 NORMAL, 1 bacterial, 2 viral",
    )
    parser.add_argument(
        "--threshold", type=float, default=None,
        help="decision threshold on P(PNEUMONIA) in (0, 1) (default: the model card's validation threshold, "
             "else 0.5); two-class models only",
    )
    parser.add_argument("--append", action="store_true", help="append to DIR/explanations.jsonl instead of rewriting it")
    parser.add_argument("--alpha", type=float, default=0.4, help="heatmap opacity in the overlay (default: 0.4)")
    parser.set_defaults(handler=_explain)


def explain_files(model_path, image_paths, *, method="gradcam", out, layer=None, class_index=None, alpha=0.4,
                  threshold=None, append=False) -> list[dict]:
    """Explain image files with a saved model; write overlays; return one record per image.

    Each image is read as grayscale, resized to the model's input and given its channel count
    (as the data pipeline does). The prediction is :mod:`pneumo_lib.decision`'s rule at
    ``threshold`` (None: the model card's validation threshold, else 0.5), the same answer the
    explorer and the app give. Records hold ``image``, ``overlay`` (PNG path), ``prediction``
    (class name), ``probability`` (P(PNEUMONIA)), ``threshold``, ``explained_class``,
    ``method`` and ``layer``; they are written to ``out/explanations.jsonl``, replacing its
    lines unless ``append``.

    A three-class model (NORMAL, bacterial, viral; :func:`pneumo_lib.decision.model_classes`)
    predicts the arg-max: its records hold ``probability`` = the predicted class's probability,
    ``probabilities`` = ``{class name: probability}`` for all three, and ``threshold`` = None.

    Raises:
        ValueError: A threshold given for a three-class model, a ``class_index`` outside the
            model's classes, or a model whose output is neither two- nor three-class.
    """
    import numpy as np
    from PIL import Image

    from pneumo_lib import cam, data, decision, training
    from pneumo_lib.paths import check_file

    check_file(model_path, "model file", suffix=".keras")  # a folder is called a folder
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: expected the folder for the overlays "
                         "(created if missing).")
    paths = [Path(p) for p in image_paths]
    for path in paths:
        data.check_image_file(path)  # missing, a folder or empty: named in one line
    model = training.load_model(model_path)
    n_classes = decision.model_classes(model)
    names = decision.class_names(n_classes)
    if n_classes == 3 and threshold is not None:
        raise ValueError(f"--threshold {threshold} applies to two-class models only: {model_path} has three "
                         f"classes ({', '.join(names)}) and predicts the one with the largest probability.")
    class_index = decision.check_class_index(class_index, n_classes)
    size, channels = model.inputs[0].shape[1], model.inputs[0].shape[-1]
    images = data.load_images(paths, size, channels)
    cut = decision.model_threshold(model, threshold) if n_classes == 2 else None
    labels, probabilities = cam.predict(model, images, threshold=cut)
    explained = labels if class_index is None else np.full(len(images), class_index)
    layer_name = cam.resolve_layer(model, layer)
    maps = cam.METHODS[method](model, images, layer=layer, class_index=explained)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for i, path in enumerate(paths):
        overlay_path = out / f"{path.stem}_{method}.png"
        Image.fromarray(cam.overlay(images[i], maps[i], alpha=alpha)).save(overlay_path)
        label = int(labels[i])
        record = {
            "image": str(path),
            "overlay": str(overlay_path),
            "prediction": names[label],
            "probability": round(float(probabilities[i, 1 if n_classes == 2 else label]), 6),
            "threshold": None if cut is None else round(cut, 6),
            "explained_class": names[int(explained[i])],
            "method": method,
            "layer": layer_name,
        }
        if n_classes == 3:
            record["probabilities"] = {n: round(float(probabilities[i, k]), 6) for k, n in enumerate(names)}
        records.append(record)
    with open(out / "explanations.jsonl", "a" if append else "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return records


def _explain(args: argparse.Namespace) -> int:
    records = explain_files(
        args.model, args.images, method=args.method, out=args.out,
        layer=args.layer, class_index=args.class_index, alpha=args.alpha,
        threshold=args.threshold, append=args.append,
    )
    for record in records:
        print(json.dumps(record))
    return 0
