"""``pneumo train`` and ``pneumo evaluate``: train a model on a dataset folder, evaluate a model file."""

from __future__ import annotations

import argparse
import json

from pneumo_lib.profiles import PROFILES

_MODELS = ("paper_cnn", "project_b_cnn", "vgg16", "vgg19", "resnet50", "mobilenet_v2", "densenet121", "xception")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a model on a dataset folder and save it (.keras + model card)",
        description=(
            "Train one model on a folder in the Kaggle layout (what `pneumo data ... --out DIR` wrote): "
            "patient-grouped train/val split, class weights, early stopping on validation AUC, "
            "best checkpoint saved to --out, test metrics with the threshold chosen on validation."
        ),
    )
    train.add_argument("--model", required=True, help=f"one of: {', '.join(_MODELS)}")
    train.add_argument("--data", required=True, metavar="DIR", help="dataset folder (holds chest_xray/ or train/val/test)")
    train.add_argument("--out", required=True, metavar="FILE", help="model file to write, e.g. model.keras")
    train.add_argument("--profile", default="quick", help=f"one of: {', '.join(PROFILES)} (default: quick)")
    train.add_argument("--head", default=None, choices=("sigmoid", "softmax"),
                       help="two classes: sigmoid (default) or softmax; three classes: softmax")
    train.add_argument("--classes", default="2", metavar="K",
                       help="2 (NORMAL, PNEUMONIA; default) or 3 (NORMAL, bacterial, viral, read from the file names)")
    train.add_argument(
        "--weights", default="profile",
        help="backbones: 'imagenet', 'none' (from scratch), a local weights file, or 'profile' (default)",
    )
    train.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    train.add_argument("--strategy", default="auto", choices=("auto", "default", "mirrored", "tpu"))
    train.add_argument("--quiet", action="store_true", help="no per-epoch output")
    train.set_defaults(handler=_train)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="evaluate a model file on a dataset folder's test split",
        description=(
            "Accuracy, precision, sensitivity, specificity, F1, ROC AUC and PR AUC on the test split, "
            "at a threshold chosen on the validation split, with bootstrap 95%% intervals; with --calibration, "
            "the calibration before and after temperature scaling."
        ),
    )
    evaluate.add_argument("model", metavar="MODEL.keras")
    evaluate.add_argument("--data", required=True, metavar="DIR", help="dataset folder")
    evaluate.add_argument("--profile", default=None, help="default: the profile in the model card")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    evaluate.add_argument(
        "--calibration", action="store_true",
        help="also fit a temperature on the validation split and print the test split's ECE (with its "
             "patient-bootstrap 95%% interval), maximum calibration error and Brier score before and after "
             "temperature scaling, and the fitted temperature")
    evaluate.add_argument(
        "--store-temperature", action="store_true",
        help="with --calibration: write the fitted temperature into the model card, so that the app and "
             "the explorer show calibrated probabilities")
    evaluate.add_argument("--bins", type=int, default=15, help="with --calibration: ECE bins (default: 15)")
    evaluate.add_argument(
        "--refer-fraction", type=float, default=None, metavar="F",
        help="with --calibration: compute the referral level, the uncertainty (entropy at the decision "
             "threshold) above which the fraction F, in (0, 1), of the validation images lie (e.g. 0.1), "
             "and count the test images above it; with --store-temperature it is stored in the model card "
             "too, and the app and the explorer flag images above it 'Uncertain: refer to a radiologist'")
    evaluate.set_defaults(handler=_evaluate)


def _train(args: argparse.Namespace) -> int:
    from pneumo_lib import experiments
    from pneumo_lib.profiles import get_profile

    classes = _classes(args.classes)
    if classes == 3 and args.head == "sigmoid":
        raise ValueError("--classes 3 needs a softmax head (three units); leave out --head or use --head softmax.")
    profile = get_profile(args.profile, epochs=args.epochs)
    weights = None if args.weights.lower() == "none" else args.weights
    if classes == 3:
        from pneumo_lib import three_classes

        result, evaluation = three_classes.train_on_folder(
            args.model, args.data, args.out, profile=profile, weights=weights,
            verbose=0 if args.quiet else "auto", strategy=args.strategy,
        )
    else:
        result, evaluation = experiments.train_on_folder(
            args.model, args.data, args.out, profile=profile, head=args.head or "sigmoid", weights=weights,
            verbose=0 if args.quiet else "auto", strategy=args.strategy,
        )
    summary = result.summary()
    print(f"saved {args.out} (model card beside it)")
    what = "macro ROC AUC" if classes == 3 else "ROC AUC"
    print(f"best epoch {summary['best_epoch']} of {summary['epochs_run']}, validation {what} {summary['best_val_auc']:.4f}, "
          f"{summary['images_per_second']} images/s on {summary['replicas']} replica(s)")
    (_print_evaluation3 if classes == 3 else _print_evaluation)(evaluation)
    return 0


def _classes(value: str) -> int:
    """``--classes`` as 2 or 3; anything else is a one-line error."""
    if str(value).strip() not in ("2", "3"):
        raise ValueError(f"--classes must be 2 (NORMAL, PNEUMONIA) or 3 (NORMAL, bacterial, viral), got {value!r}.")
    return int(value)


def _is_three_class_file(path: str) -> bool:
    """Whether a model file holds a three-class model: its card says so (no model loading needed)."""
    from pneumo_lib import training

    try:
        return int(training.read_card(path).get("classes", 2)) == 3
    except (OSError, ValueError):
        return False


def _evaluate(args: argparse.Namespace) -> int:
    from pneumo_lib import calibration, experiments

    if not args.calibration and (args.store_temperature or args.bins != calibration.DEFAULT_BINS):
        raise ValueError("--store-temperature and --bins only apply with --calibration.")
    if not args.calibration and args.refer_fraction is not None:
        raise ValueError("--refer-fraction only applies with --calibration.")
    if args.refer_fraction is not None and not 0.0 < args.refer_fraction < 1.0:
        raise ValueError(f"--refer-fraction must be strictly between 0 and 1 (e.g. 0.1), got {args.refer_fraction}.")
    if args.calibration and (isinstance(args.bins, bool) or args.bins < 1):
        raise ValueError(f"--bins must be a positive integer, got {args.bins}.")
    if _is_three_class_file(args.model):
        from pneumo_lib import three_classes

        if args.calibration:
            raise ValueError(f"{args.model} is a three-class model; --calibration applies to two-class models only.")
        evaluation = three_classes.evaluate_file(args.model, args.data, profile=args.profile)
        if args.json:
            print(json.dumps(evaluation.as_dict(), sort_keys=True))
        else:
            _print_evaluation3(evaluation)
        return 0
    evaluation = experiments.evaluate_file(args.model, args.data, profile=args.profile)
    report = calibration.file_report(args.model, args.data, profile=args.profile, bins=args.bins,
                                     store=args.store_temperature,
                                     refer_fraction=args.refer_fraction) if args.calibration else None
    if args.json:
        out = evaluation.as_dict()
        if report is not None:
            out["calibration"] = report
        print(json.dumps(out, sort_keys=True))
    else:
        _print_evaluation(evaluation)
        if report is not None:
            print("\n".join(calibration.format_report(report)))
    return 0


def _print_evaluation(evaluation) -> None:
    from pneumo_lib.evaluation import METRIC_TITLES, METRICS

    print(f"test split, threshold {evaluation.threshold:.4f} ({evaluation.threshold_source}):")
    for name in METRICS:
        low, high = evaluation.ci[name]
        print(f"  {METRIC_TITLES[name]:>12}  {evaluation.metrics[name]:.4f}  95% CI [{low:.4f}, {high:.4f}]")
    (tn, fp), (fn, tp) = evaluation.metrics["confusion"]
    print(f"  confusion: TN {tn}  FP {fp}  FN {fn}  TP {tp}")


def _print_evaluation3(evaluation) -> None:
    from pneumo_lib.three_classes import PER_CLASS_METRICS, SUMMARY_METRICS, THREE_CLASSES

    m, ci = evaluation.metrics, evaluation.ci
    print(f"test split, three classes (predicted class: the most probable), 95% CI over {evaluation.ci_unit}s:")
    for name in SUMMARY_METRICS:
        print(f"  {name.replace('_', ' '):>22}  {m[name]:.4f}  95% CI [{ci[name][0]:.4f}, {ci[name][1]:.4f}]")
    print(f"  {'class':>10}  " + "  ".join(f"{name:>26}" for name in PER_CLASS_METRICS))
    for c in THREE_CLASSES:
        cells = [f"{m[f'{name}_{c}']:.4f} [{ci[f'{name}_{c}'][0]:.4f}, {ci[f'{name}_{c}'][1]:.4f}]" for name in PER_CLASS_METRICS]
        print(f"  {c:>10}  " + "  ".join(f"{cell:>26}" for cell in cells))
    print("  confusion (rows true, columns predicted: " + ", ".join(THREE_CLASSES) + "):")
    for c, row in zip(THREE_CLASSES, m["confusion"]):
        print(f"  {c:>10}  " + "  ".join(f"{v:>5}" for v in row))
