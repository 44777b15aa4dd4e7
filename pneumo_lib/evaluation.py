"""Evaluation: metrics (scikit-learn), a threshold chosen on validation, bootstrap CIs, comparisons.

The rule this module enforces: the decision threshold is chosen on the *validation*
split (Youden's J by default) and then applied, unchanged, to the *test* split, where
every metric is reported with a bootstrap 95% confidence interval. Test labels are never
used to choose anything.

Probabilities are those of PNEUMONIA (label 1); labels are ``0 = NORMAL``, ``1 = PNEUMONIA``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
from sklearn import metrics as skm

from pneumo_lib import decision

#: Metrics reported for one split, in table order.
METRICS: tuple[str, ...] = (
    "accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc",
)

#: Column titles for tables.
METRIC_TITLES: dict[str, str] = {
    "accuracy": "accuracy",
    "precision": "precision",
    "recall": "sensitivity",
    "specificity": "specificity",
    "f1": "F1",
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
}


def _check_pair(y_true: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).reshape(-1)
    prob = np.asarray(p, dtype=np.float64).reshape(-1)
    if y.shape != prob.shape:
        raise ValueError(f"Labels and probabilities differ in length: {y.size} vs {prob.size}.")
    if y.size == 0:
        raise ValueError("No samples to evaluate.")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"Labels must be 0 (NORMAL) or 1 (PNEUMONIA); found {sorted(set(y.tolist()))[:5]}.")
    if not (np.isfinite(prob).all() and (prob >= 0).all() and (prob <= 1).all()):
        raise ValueError("Probabilities must be finite and within [0, 1].")
    return y.astype(int), prob


def binary_metrics(y_true: Any, p: Any, threshold: float = 0.5) -> dict[str, Any]:
    """Metrics of P(PNEUMONIA) scores at one threshold.

    The predicted class comes from the one prediction rule,
    :func:`pneumo_lib.decision.predicted_class` (PNEUMONIA when ``p >= threshold``).

    Args:
        y_true: Labels ``(N,)`` in {0, 1}.
        p: Probabilities ``(N,)`` in [0, 1].
        threshold: Decision threshold in (0, 1).

    Returns:
        ``accuracy``, ``precision``, ``recall`` (sensitivity), ``specificity``, ``f1``,
        ``roc_auc``, ``pr_auc`` (average precision), floats (``nan`` where undefined,
        e.g. AUC with one class); ``confusion`` ``[[TN, FP], [FN, TP]]``; ``threshold``; ``n``.

    Raises:
        ValueError: Labels or probabilities malformed (named), or ``threshold`` outside (0, 1).
    """
    y, prob = _check_pair(y_true, p)
    threshold = decision.check_threshold(threshold)
    pred = decision.predicted_class(prob, threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    both = len(np.unique(y)) == 2
    return {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, zero_division=np.nan)),
        "recall": float(skm.recall_score(y, pred, zero_division=np.nan)),
        "specificity": float(tn / (tn + fp)) if tn + fp else float("nan"),
        "f1": float(skm.f1_score(y, pred, zero_division=np.nan)),
        "roc_auc": float(skm.roc_auc_score(y, prob)) if both else float("nan"),
        "pr_auc": float(skm.average_precision_score(y, prob)) if both else float("nan"),
        "confusion": [[int(tn), int(fp)], [int(fn), int(tp)]],
        "threshold": float(threshold),
        "n": int(y.size),
    }


def _cut_scores(y: np.ndarray, prob: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The criterion of every distinct way of cutting the validation scores.

    With ``u_0 < ... < u_{m-1}`` the distinct scores, cut ``k`` (``0..m``) calls the scores
    ``u_k, ..., u_{m-1}`` PNEUMONIA: it is what every threshold in ``(u_{k-1}, u_k]`` does
    (``u_{-1} = 0``, and cut ``m``, nothing called PNEUMONIA, is ``(u_{m-1}, 1)``).

    Returns:
        ``(score, low, high)`` per cut: the criterion (``-inf`` where no threshold in
        (0, 1) makes the cut), and the bounds of its range of thresholds.
    """
    values, inverse = np.unique(prob, return_inverse=True)
    pos = np.bincount(inverse, weights=(y == 1), minlength=values.size)
    neg = np.bincount(inverse, weights=(y == 0), minlength=values.size)
    tp = np.append(np.cumsum(pos[::-1])[::-1], 0.0)
    fp = np.append(np.cumsum(neg[::-1])[::-1], 0.0)
    n_pos, n_neg = pos.sum(), neg.sum()
    if method == "youden":
        score = tp / n_pos - fp / n_neg
    elif method == "f1":
        score = 2 * tp / (2 * tp + fp + (n_pos - tp))  # n_pos > 0: never 0 / 0
    else:
        raise ValueError(f"Unknown threshold method {method!r}. Valid: youden, f1.")
    low, high = np.append(0.0, values), np.append(values, 1.0)
    return np.where(low < high, score, -np.inf), low, high


def choose_threshold(y_val: Any, p_val: Any, method: str = "youden") -> float:
    """The decision threshold chosen on validation scores.

    Every threshold between two neighbouring distinct validation scores gives the same
    decisions on validation, so the criterion picks a *range* of equally good thresholds,
    and the rule returns its **midpoint** (in probability): for a validation split that the
    model separates perfectly, the midpoint of the gap between the highest-scored NORMAL
    and the lowest-scored PNEUMONIA image, wherever in the gap a retrained model's scores
    happen to fall. Where neighbouring ranges are equally good (a score shared by both
    classes that changes sensitivity and specificity alike), they count as one range. When
    several separate ranges tie, the one whose midpoint is closest to 0.5 wins (the lower
    on an exact tie). The range of "every image PNEUMONIA" starts at 0 and that of "none"
    ends at 1, so the result is always strictly inside (0, 1), a threshold that
    :func:`pneumo_lib.decision.check_threshold` accepts, never 0.0 or 1.0.

    Args:
        y_val: Validation labels ``(N,)`` in {0, 1} (both classes present).
        p_val: Validation probabilities ``(N,)`` in [0, 1].
        method: ``"youden"`` (maximise sensitivity + specificity - 1) or ``"f1"``
            (maximise F1), over the cuts of the validation scores.

    Returns:
        A threshold in (0, 1); predict PNEUMONIA when ``p >= threshold``
        (:func:`pneumo_lib.decision.predicted_class`).

    Raises:
        ValueError: Malformed labels or probabilities, a single class, an unknown method.
    """
    y, prob = _check_pair(y_val, p_val)
    if len(np.unique(y)) < 2:
        raise ValueError("The validation split needs both classes to choose a threshold.")
    score, low, high = _cut_scores(y, prob, method)
    best = np.isfinite(score) & np.isclose(score, score.max(), rtol=0.0, atol=1e-9)
    # Runs of consecutive best cuts: their threshold ranges join into one.
    edges = np.diff(np.concatenate([[0], best.astype(int), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    lows, highs = low[starts], high[stops]
    mids = lows + (highs - lows) / 2
    mids = np.where(mids > lows, mids, highs)  # two adjacent floats: the range's upper end
    return decision.check_threshold(mids[np.argmin(np.abs(mids - 0.5))])


def _count_metrics(tp, fp, fn, tn) -> dict[str, np.ndarray]:
    """Threshold metrics from confusion counts (arrays of resamples), ``nan`` where undefined.

    The same definitions as scikit-learn's scores (checked against them in the tests),
    vectorised so that bootstrapping thousands of resamples stays fast.
    """
    tp, fp, fn, tn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn, tn))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        return {
            "accuracy": (tp + tn) / (tp + fp + fn + tn),
            "precision": precision,
            "recall": recall,
            "specificity": np.where(tn + fp > 0, tn / (tn + fp), np.nan),
            "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan),
        }


def bootstrap_indices(n: int, groups: Any = None, *, rounds: int = 200, seed: int = 0) -> list[np.ndarray]:
    """Index sets of a bootstrap: images resampled, or whole patients resampled.

    Args:
        n: Number of images.
        groups: ``None`` (resample images) or one patient id per image, ``(n,)``: then
            patients are drawn with replacement and each drawn patient brings *all* of
            their images, so images of one patient never count as independent evidence.
        rounds: Number of resamples, >= 1.
        seed: Seed of the generator.

    Returns:
        ``rounds`` int arrays of image indices (length ``n`` for images; about ``n`` for
        patients, varying with the patients drawn).

    Raises:
        ValueError: ``rounds < 1`` or ``groups`` not of length ``n``.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}.")
    rng = np.random.default_rng(seed)
    if groups is None:
        return list(rng.integers(0, n, (rounds, n)))
    groups = np.asarray(groups).reshape(-1)
    if groups.size != n:
        raise ValueError(f"groups must give one patient per image: {groups.size} groups for {n} images.")
    _, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    drawn = rng.integers(0, len(members), (rounds, len(members)))
    return [np.concatenate([members[g] for g in row]) for row in drawn]


def bootstrap_ci(
    y_true: Any, p: Any, threshold: float, *, groups: Any = None, rounds: int = 200, seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap confidence intervals of every metric of :data:`METRICS`.

    Resamples ``rounds`` times at the fixed threshold: whole patients when ``groups``
    gives each image's patient (the honest unit when patients have several images, as in
    the Kaggle and phantom test splits), else single images (see :func:`bootstrap_indices`).
    The AUCs come from scikit-learn per resample (resamples with a single class are
    skipped); the threshold metrics from the resampled confusion counts, each image's class
    decided once by :func:`pneumo_lib.decision.predicted_class`.

    Args:
        y_true, p: Labels in {0, 1} and P(PNEUMONIA) in [0, 1], ``(N,)``.
        threshold: Decision threshold in (0, 1).
        groups: Optional patient id per image, ``(N,)``.
        rounds, seed: Bootstrap size and seed.
        level: Interval coverage, e.g. 0.95.

    Returns:
        ``{metric: (low, high)}`` at the given level (``nan`` bounds if never defined).

    Raises:
        ValueError: Malformed labels or probabilities, or ``threshold`` outside (0, 1).
    """
    y, prob = _check_pair(y_true, p)
    called = decision.predicted_class(prob, threshold).astype(bool)  # the one rule, decided once
    samples: dict[str, list[float]] = {m: [] for m in METRICS}
    for idx in bootstrap_indices(y.size, groups, rounds=rounds, seed=seed):
        ys, ps = y[idx], prob[idx]
        pred, pos = called[idx], ys == 1
        counts = _count_metrics(
            np.sum(pred & pos), np.sum(pred & ~pos), np.sum(~pred & pos), np.sum(~pred & ~pos))
        for m, v in counts.items():
            samples[m].append(float(v))
        both = pos.any() and (~pos).any()
        samples["roc_auc"].append(skm.roc_auc_score(ys, ps) if both else math.nan)
        samples["pr_auc"].append(skm.average_precision_score(ys, ps) if both else math.nan)
    return percentile_intervals(samples, level)


def percentile_intervals(samples: dict[str, Any], level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile intervals of bootstrap samples, one per metric.

    Args:
        samples: ``{metric: values}``, one value per resample; NaN values (a resample where
            the metric is undefined, e.g. an AUC with one class) are left out.
        level: Coverage, e.g. 0.95 for the 2.5th and 97.5th percentiles.

    Returns:
        ``{metric: (low, high)}`` in the order of ``samples``; ``(nan, nan)`` when no value is defined.
    """
    tail = (1 - level) / 2 * 100
    out = {}
    for m, values in samples.items():
        v = np.asarray(values, dtype=np.float64)
        v = v[~np.isnan(v)]
        out[m] = (float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))) if v.size else (math.nan, math.nan)
    return out


@dataclass
class Evaluation:
    """A model's test-split evaluation at a threshold chosen on validation.

    Attributes:
        name: What was evaluated (model name).
        metrics: :func:`binary_metrics` on test at :attr:`threshold`.
        ci: Bootstrap 95% intervals of the test metrics.
        ci_unit: What the bootstrap resampled: ``"patient"`` or ``"image"``.
        threshold: The decision threshold.
        threshold_source: ``"validation (youden)"``, ``"given"`` or ``"default 0.5"``.
        y_true, p: Test labels and probabilities ``(N,)``.
        val_metrics: Metrics on validation at the same threshold, if validation was given.
        context: What data and profile produced it, e.g. ``{"data": "phantom", "profile": "quick"}``.
    """

    name: str
    metrics: dict[str, Any]
    ci: dict[str, tuple[float, float]]
    threshold: float
    threshold_source: str
    y_true: np.ndarray
    p: np.ndarray
    val_metrics: dict[str, Any] | None = None
    context: dict[str, Any] = field(default_factory=dict)
    ci_unit: str = "image"

    def roc_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(fpr, tpr)`` of the test ROC curve."""
        fpr, tpr, _ = skm.roc_curve(self.y_true, self.p)
        return fpr, tpr

    def pr_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(recall, precision)`` of the test precision-recall curve."""
        precision, recall, _ = skm.precision_recall_curve(self.y_true, self.p)
        return recall, precision

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no per-sample arrays)."""
        rounded = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.metrics.items()}
        return {
            "name": self.name,
            "split": "test",
            "threshold": round(self.threshold, 6),
            "threshold_source": self.threshold_source,
            "metrics": rounded,
            "ci95": {k: [round(lo, 6), round(hi, 6)] for k, (lo, hi) in self.ci.items()},
            "ci_unit": self.ci_unit,
            "val_metrics": None if self.val_metrics is None else {
                k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.val_metrics.items()
            },
            "context": self.context,
        }


def evaluate_predictions(
    y_test: Any,
    p_test: Any,
    y_val: Any = None,
    p_val: Any = None,
    *,
    name: str = "model",
    threshold: float | None = None,
    method: str = "youden",
    bootstrap_rounds: int = 200,
    seed: int = 0,
    groups: Any = None,
    context: Mapping[str, Any] | None = None,
) -> Evaluation:
    """Evaluate test probabilities, choosing the threshold on validation probabilities.

    Args:
        y_test, p_test: Test labels and P(PNEUMONIA), ``(N,)``.
        y_val, p_val: Validation labels and probabilities; used only to choose the
            threshold (and reported as :attr:`Evaluation.val_metrics`).
        threshold: A fixed threshold instead (then validation only gets reported);
            with neither, 0.5.
        method: Threshold rule, see :func:`choose_threshold`.
        bootstrap_rounds: Resamples for the 95% intervals.
        seed: Seed of the bootstrap.
        groups: Patient id of every test image ``(N,)`` (e.g. ``manifest.patients("test")``):
            the intervals then resample patients. Without it, images (narrower than the
            truth when patients have several images).
        context: What produced the numbers (profile, data source, ...), kept for tables.
    """
    has_val = y_val is not None and p_val is not None
    if threshold is not None:
        source = "given"
    elif has_val:
        threshold, source = choose_threshold(y_val, p_val, method), f"validation ({method})"
    else:
        threshold, source = 0.5, "default 0.5"
    y, p = _check_pair(y_test, p_test)
    return Evaluation(
        name=name,
        metrics=binary_metrics(y, p, threshold),
        ci=bootstrap_ci(y, p, threshold, groups=groups, rounds=bootstrap_rounds, seed=seed),
        threshold=float(threshold),
        threshold_source=source,
        y_true=y,
        p=p,
        val_metrics=binary_metrics(y_val, p_val, threshold) if has_val else None,
        context=dict(context or {}),
        ci_unit="image" if groups is None else "patient",
    )


def predict_proba(model: Any, data: Any) -> tuple[np.ndarray, np.ndarray]:
    """Labels and P(PNEUMONIA) of a model over a dataset of ``(images, labels)`` batches.

    Works for both heads: one sigmoid unit (its value) or two softmax units (column 1).

    Returns:
        ``(y, p)``: labels ``(N,)`` int and probabilities ``(N,)`` float in [0, 1].
    """
    ys, ps = [], []
    for images, labels in data:
        ps.append(decision.pneumonia_probability(model(images, training=False)))
        ys.append(np.asarray(labels).reshape(-1))
    if not ys:
        raise ValueError("The dataset is empty: nothing to predict.")
    return np.concatenate(ys).astype(int), np.concatenate(ps)


def evaluate_model(
    model: Any,
    test_data: Any,
    val_data: Any = None,
    *,
    name: str | None = None,
    **options: Any,
) -> Evaluation:
    """Predict on test (and validation) data and evaluate (see :func:`evaluate_predictions`)."""
    y_test, p_test = predict_proba(model, test_data)
    y_val = p_val = None
    if val_data is not None:
        y_val, p_val = predict_proba(model, val_data)
    return evaluate_predictions(y_test, p_test, y_val, p_val, name=name or model.name, **options)


# --------------------------------------------------------------------------- comparing models


def _cell(value: float, ci: tuple[float, float] | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if ci is None or any(math.isnan(c) for c in ci):
        return f"{value:.3f}"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


@dataclass
class ComparisonTable:
    """Several models side by side (rows) over :data:`METRICS` (columns).

    In a notebook it renders as an HTML table (each interval on its own line under its
    value, so the table fits a book page); :meth:`to_frame` gives the numbers as a
    pandas DataFrame with separate value / low / high columns.

    Attributes:
        header: Column titles.
        rows: One list of cell strings per model (``"0.996 [0.990, 1.000]"``).
        caption: What data, split and profile produced the numbers.
        values: One ``{column title: (value, low, high)}`` per row (``nan`` where absent),
            parallel to ``rows``; the threshold column has no interval.
    """

    header: list[str]
    rows: list[list[str]]
    caption: str
    values: list[dict[str, tuple[float, float, float]]] = field(default_factory=list)

    def to_markdown(self) -> str:
        """A Markdown table with its caption above it."""
        lines = [f"*{self.caption}*", "", "| " + " | ".join(self.header) + " |",
                 "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)

    def to_frame(self):
        """The numbers as a ``pandas.DataFrame``: one row per model, for each metric a
        ``(metric, "value")``, ``(metric, "low")``, ``(metric, "high")`` column (floats)."""
        import pandas as pd

        names = [r[0] for r in self.rows]
        columns = pd.MultiIndex.from_tuples(
            [(title, part) for title in self.header[1:] for part in ("value", "low", "high")])
        data = [[x for title in self.header[1:] for x in row.get(title, (math.nan,) * 3)] for row in self.values]
        frame = pd.DataFrame(data, index=pd.Index(names, name=self.header[0]), columns=columns)
        frame.attrs["caption"] = self.caption
        return frame

    def _repr_html_(self) -> str:
        import html

        def cell(text: str) -> str:
            value, _, interval = text.partition(" [")
            body = html.escape(value)
            if interval:
                body += f'<br><span class="pneumo-ci">[{html.escape(interval)}</span>'
            return body

        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join(
            "<tr><th>" + html.escape(r[0]) + "</th>" + "".join(f"<td>{cell(c)}</td>" for c in r[1:]) + "</tr>"
            for r in self.rows)
        return (f'<table class="pneumo-table"><caption>{html.escape(self.caption)}</caption>'
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def __str__(self) -> str:
        widths = [max(len(r[i]) for r in [self.header, *self.rows]) for i in range(len(self.header))]
        fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
        return "\n".join([self.caption, fmt(self.header), *map(fmt, self.rows)])

    __repr__ = __str__


def comparison_table(
    evaluations: Iterable[Evaluation],
    *,
    caption: str,
    metrics: Iterable[str] = ("accuracy", "recall", "specificity", "f1", "roc_auc"),
    references: Iterable[Mapping[str, Any]] = (),
    with_ci: bool = True,
) -> ComparisonTable:
    """Put several evaluations side by side, like the paper's results table.

    Args:
        evaluations: Our models' :class:`Evaluation` objects (test split).
        caption: Must say what data, split and profile produced the numbers.
        metrics: Columns, from :data:`METRICS`.
        references: Published numbers to show below ours, each a mapping with ``name``
            (e.g. ``"Kermany et al. 2018 (reference, real data)"``) and any metric keys;
            missing metrics show as ``-``.
        with_ci: Show the bootstrap 95% interval in each cell.
    """
    metrics = list(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"Unknown metric(s) {unknown}. Valid: {', '.join(METRICS)}.")
    header = ["model", "threshold", *(METRIC_TITLES[m] for m in metrics)]
    nan_ci = (math.nan, math.nan)
    rows, values = [], []
    for e in evaluations:
        rows.append([e.name, f"{e.threshold:.3f}",
                     *(_cell(e.metrics[m], e.ci.get(m) if with_ci else None) for m in metrics)])
        values.append({"threshold": (e.threshold, *nan_ci),
                       **{METRIC_TITLES[m]: (e.metrics[m], *(e.ci.get(m, nan_ci) if with_ci else nan_ci))
                          for m in metrics}})
    for ref in references:
        rows.append([str(ref["name"]), "-", *(_cell(ref.get(m, math.nan), None) for m in metrics)])
        values.append({METRIC_TITLES[m]: (float(ref.get(m, math.nan)), *nan_ci) for m in metrics})
    return ComparisonTable(header, rows, caption, values)


def plot_curves(evaluations: Iterable[Evaluation], *, title: str = ""):
    """ROC and precision-recall curves of several models on one figure (two panels).

    Returns:
        The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(10, 4.2))
    for e in evaluations:
        fpr, tpr = e.roc_curve()
        roc_ax.plot(fpr, tpr, label=f"{e.name} (AUC {e.metrics['roc_auc']:.3f})")
        recall, precision = e.pr_curve()
        pr_ax.plot(recall, precision, label=f"{e.name} (AP {e.metrics['pr_auc']:.3f})")
        op = e.metrics
        roc_ax.plot(1 - op["specificity"], op["recall"], "o", color=roc_ax.lines[-1].get_color())
    roc_ax.plot([0, 1], [0, 1], ":", color="gray", label="chance")
    roc_ax.set(xlabel="false positive rate (1 - specificity)", ylabel="true positive rate (sensitivity)", title="ROC (dot: chosen threshold)")
    pr_ax.set(xlabel="recall (sensitivity)", ylabel="precision", title="precision-recall", ylim=(0, 1.02))
    for ax in (roc_ax, pr_ax):
        ax.legend(loc="lower right" if ax is roc_ax else "lower left", fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_comparison(
    evaluations: Iterable[Evaluation],
    *,
    metrics: Iterable[str] = ("accuracy", "recall", "specificity", "roc_auc"),
    title: str = "",
):
    """Grouped bars of test metrics with their bootstrap 95% intervals as error bars.

    Returns:
        The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    evaluations, metrics = list(evaluations), list(metrics)
    # A book page is about 8 inches wide: keep the figure there and the legend below the
    # bars (inside, it covered them), one column per two models.
    fig, ax = plt.subplots(figsize=(8, 3.6 + 0.25 * len(evaluations)))
    width = 0.8 / max(1, len(evaluations))
    x = np.arange(len(metrics))
    for i, e in enumerate(evaluations):
        values = np.array([e.metrics[m] for m in metrics])
        lows = np.array([e.ci[m][0] for m in metrics])
        highs = np.array([e.ci[m][1] for m in metrics])
        err = np.nan_to_num(np.vstack([values - lows, highs - values]).clip(min=0))
        ax.bar(x + i * width - 0.4 + width / 2, values, width, yerr=err, capsize=3, label=e.name)
    ax.set_xticks(x, [METRIC_TITLES[m] for m in metrics])
    ax.set(ylim=(0, 1.05), ylabel="test value (95% bootstrap CI)")
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
