"""How sure is the model about *this* image: MC dropout, deep ensembles, risk-coverage and referral.

* :func:`mc_dropout`: ``passes`` stochastic forward passes with the model's **dropout layers
  alone** switched on. Calling a Keras model with ``training=True`` would also switch batch
  normalisation to the batch's statistics (outputs then depend on which images share the
  batch); here every batch-normalisation layer stays in inference mode and its moving
  statistics are never touched. The dropout masks come from a generator seeded by ``seed``.
* :func:`ensemble`: the members' P(PNEUMONIA) averaged; their spread, the predictive
  entropy and the *mutual information* (entropy of the mean minus the mean of the members'
  entropies: the part of the uncertainty that is disagreement between members).
  :func:`cached_ensemble` trains (once, through the model cache) scratch CNNs that differ
  only in their training seed: same data, same split, other initialisation and batch order.
* :func:`risk_coverage`: keep the most certain images first; the error rate among the kept
  ones (*risk*) against the share kept (*coverage*).
* :func:`referral`: refer the most uncertain fraction to a radiologist and report
  sensitivity, specificity and accuracy on the images the model keeps.
* The flag of *one* image (what the explorer and the app show): :func:`refer` flags an image
  "Uncertain: refer to a radiologist" (:data:`REFERRAL_FLAG`) when its
  :func:`threshold_entropy` at the model's decision threshold is above a **referral level**.
  :func:`referral_level` computes that level from validation predictions (the uncertainty
  above which the chosen fraction, default 10%, of the validation images lie: the chapter's
  rule "refer the 10% most uncertain" turned into a level a new image can be compared
  with); :func:`calibrate_referral` stores it in the model card (``card["referral"]``,
  ``pneumo evaluate --calibration --refer-fraction 0.1 --store-temperature``), and a model
  whose card holds none uses :data:`DEFAULT_REFERRAL_LEVEL` (0.811 bits: odds within a
  factor of 3 of the threshold's). The flag is shown beside the predicted class, never
  instead of it: the class is still the one rule of :mod:`pneumo_lib.decision`.

Entropies are in **bits** (a binary prediction's entropy is at most 1 bit, at P = 0.5).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from pneumo_lib import decision
from pneumo_lib.calibration import check_labels, check_probabilities

#: Keras layer classes whose ``call`` :func:`mc_dropout` switches on (Dropout's subclasses too).
_DROPOUT_CLASSES = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D")


def binary_entropy(p: Any) -> np.ndarray:
    """Entropy in bits of Bernoulli(p), elementwise (0 at p = 0 or 1, 1 at p = 0.5)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.nan_to_num(h, nan=0.0)


def threshold_entropy(p: Any, threshold: Any = decision.DEFAULT_THRESHOLD) -> np.ndarray:
    """Entropy in bits of P(PNEUMONIA) re-centred on the decision threshold.

    ``binary_entropy(sigmoid(logit(p) - logit(threshold)))``: 1 bit where ``p`` equals the
    threshold (the decision could go either way), falling towards 0 away from it. For a
    model whose validation threshold is far from 0.5 (a biased model), the plain entropy
    peaks at p = 0.5, where the decision is not in doubt at all; this one peaks where it is.
    At ``threshold = 0.5`` it is :func:`binary_entropy`.
    """
    cut = decision.check_threshold(threshold)
    q = np.clip(check_probabilities(p), 1e-15, 1 - 1e-15)
    shifted = np.log(q / (1 - q)) - np.log(cut / (1 - cut))
    return binary_entropy(np.exp(-np.logaddexp(0.0, -shifted)))


def _check_images(images: Any) -> np.ndarray:
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (N, H, W, C) batch, got shape {np.shape(images)}.")
    if not np.isfinite(x).all():
        raise ValueError("images contain NaN or infinity.")
    return x


def predict_probability(model: Any, images: Any, *, batch_size: int = 64) -> np.ndarray:
    """P(PNEUMONIA) ``float64 (N,)`` of a model in inference mode (sigmoid unit or softmax column 1)."""
    x = _check_images(images)
    out = [np.asarray(model(x[i:i + batch_size], training=False), dtype=np.float64)
           for i in range(0, len(x), batch_size)]
    return decision.pneumonia_probability(np.concatenate(out))


def dropout_layers(model: Any) -> list:
    """The model's dropout layers, nested sub-models included."""
    layers = model._flatten_layers(include_self=False, recursive=True)
    return [layer for layer in layers
            if any(cls.__name__ in _DROPOUT_CLASSES for cls in type(layer).__mro__)]


@contextlib.contextmanager
def dropout_on(model: Any, seed: int = 0):
    """Inside the block, the model's dropout layers drop at their rate whatever ``training`` says.

    Each layer's ``call`` is replaced on the instance (and restored on exit) by one that draws
    its mask from a :class:`keras.random.SeedGenerator` seeded from ``seed``; every other
    layer (batch normalisation included) still sees ``training=False``.

    Raises:
        ValueError: The model has no dropout layer.
    """
    from pneumo_lib._tf import keras

    layers = dropout_layers(model)
    if not layers:
        raise ValueError(
            f"Model {getattr(model, 'name', model)!r} has no dropout layer, so MC dropout has nothing to "
            "sample: its passes would all be identical. Use an ensemble (uncertainty.ensemble) instead.")
    saved = []
    for i, layer in enumerate(layers):
        generator = keras.random.SeedGenerator(seed * 1000 + i)

        def call(inputs, training=None, _layer=layer, _gen=generator):
            if _layer.rate <= 0:
                return inputs
            shape = _layer._get_noise_shape(inputs) if hasattr(_layer, "_get_noise_shape") else _layer.noise_shape
            return keras.random.dropout(inputs, _layer.rate, noise_shape=shape, seed=_gen)

        saved.append((layer, layer.__dict__.get("call")))
        object.__setattr__(layer, "call", call)
    try:
        yield layers
    finally:
        for layer, original in saved:
            if original is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", original)


def mc_dropout(model: Any, images: Any, *, passes: int = 30, seed: int = 0, batch_size: int = 64
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Monte-Carlo dropout: mean, spread and predictive entropy of P(PNEUMONIA) over ``passes``.

    Args:
        model: A Keras model with at least one dropout layer.
        images: ``(N, H, W, C)`` float32 batch as the model takes it.
        passes: Stochastic forward passes (>= 2).
        seed: Seed of the dropout masks (same seed, same masks).
        batch_size: Images per forward pass.

    Returns:
        ``(mean_probability, std, entropy)``, each ``float64 (N,)``: the mean P(PNEUMONIA) over
        the passes, its standard deviation over the passes, and the entropy (bits) of the mean.

    Raises:
        ValueError: No dropout layer in the model, ``passes < 2``, or bad images.
    """
    if isinstance(passes, bool) or not isinstance(passes, (int, np.integer)) or passes < 2:
        raise ValueError(f"passes must be an integer >= 2, got {passes!r}.")
    x = _check_images(images)
    with dropout_on(model, seed):
        samples = np.stack([predict_probability(model, x, batch_size=batch_size) for _ in range(passes)])
    mean = samples.mean(axis=0)
    return mean, samples.std(axis=0), binary_entropy(mean)


def ensemble_statistics(member_probabilities: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, std, entropy, mutual_information)`` of members' P(PNEUMONIA), shape ``(M, N)``.

    The mutual information is ``H(mean) - mean_m H(p_m)`` (bits, >= 0): zero when the members
    agree, however uncertain each of them is.
    """
    p = np.asarray(member_probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] == 0:
        raise ValueError(f"Expected (members, images) probabilities, got shape {p.shape}.")
    check_probabilities(p.reshape(-1))
    mean = p.mean(axis=0)
    entropy = binary_entropy(mean)
    mutual = np.maximum(entropy - binary_entropy(p).mean(axis=0), 0.0)
    return mean, p.std(axis=0), entropy, mutual


def ensemble(models: Sequence[Any], images: Any, *, batch_size: int = 64
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A deep ensemble's ``(mean_probability, std, entropy, mutual_information)``, each ``(N,)``.

    Args:
        models: Two or more Keras models taking the same images (inference mode).
        images: ``(N, H, W, C)`` batch.

    Raises:
        ValueError: Fewer than two models, or bad images.
    """
    models = list(models)
    if len(models) < 2:
        raise ValueError(f"An ensemble needs at least two models, got {len(models)}.")
    x = _check_images(images)
    return ensemble_statistics([predict_probability(m, x, batch_size=batch_size) for m in models])


# --------------------------------------------------------------------------- selective prediction


def _triple(y_true: Any, p: Any, uncertainty: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    prob = check_probabilities(p)
    y = check_labels(y_true, prob.size)
    u = np.asarray(uncertainty, dtype=np.float64).reshape(-1)
    if u.size != prob.size:
        raise ValueError(f"uncertainty must give one value per image: {u.size} values for {prob.size} images.")
    if not np.isfinite(u).all():
        raise ValueError("uncertainty contains NaN or infinity.")
    return y, prob, u


def risk_coverage(y_true: Any, p: Any, uncertainty: Any, *, threshold: Any = decision.DEFAULT_THRESHOLD
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The risk-coverage curve: keep the ``k`` most certain images, ``k = 1 .. N``.

    Args:
        y_true: Labels ``(N,)`` in {0, 1}.
        p: P(PNEUMONIA) ``(N,)``; the prediction is the project's rule at ``threshold``
            (:func:`pneumo_lib.decision.predicted_class`; pass the model's, e.g.
            ``decision.model_threshold(model)``).
        uncertainty: ``(N,)``, larger = less sure (a std, an entropy, ...). Ties keep the
            images' order (a stable sort).
        threshold: Decision threshold in (0, 1).

    Returns:
        ``(coverage, risk)``, each ``float64 (N,)``: ``coverage[k-1] = k / N`` and
        ``risk[k-1]`` the error rate among the ``k`` kept images.
    """
    y, prob, u = _triple(y_true, p, uncertainty)
    order = np.argsort(u, kind="stable")
    wrong = (decision.predicted_class(prob, threshold) != y)[order]
    k = np.arange(1, y.size + 1)
    return k / y.size, np.cumsum(wrong) / k


def area_under_risk_coverage(coverage: Any, risk: Any) -> float:
    """Mean risk over the coverages (the area under the curve; lower is better)."""
    return float(np.mean(np.asarray(risk, dtype=np.float64)))


def referral(y_true: Any, p: Any, uncertainty: Any, fractions: Iterable[float] = (0.0, 0.05, 0.1, 0.2), *,
             threshold: Any = decision.DEFAULT_THRESHOLD):
    """Refer the most uncertain ``fraction`` of images; metrics on the images the model keeps.

    Args:
        y_true, p, uncertainty, threshold: As for :func:`risk_coverage`.
        fractions: Shares to refer, each in [0, 1); ``round(fraction * N)`` images are
            referred (the most uncertain first, ties in the images' order).

    Returns:
        A pandas DataFrame indexed by ``referred`` (the fraction) with columns
        ``referred images``, ``kept images``, ``sensitivity``, ``specificity``, ``accuracy``
        (on the kept images; NaN where the kept images have no PNEUMONIA, resp. NORMAL) and
        ``PNEUMONIA among referred`` (share, NaN when nothing is referred).
    """
    import pandas as pd

    y, prob, u = _triple(y_true, p, uncertainty)
    pred = decision.predicted_class(prob, threshold)
    order = np.argsort(-u, kind="stable")  # most uncertain first
    rows = []
    for fraction in fractions:
        fraction = float(fraction)
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"A referred fraction must be in [0, 1), got {fraction!r}.")
        n_ref = int(round(fraction * y.size))
        referred, kept = order[:n_ref], order[n_ref:]
        yk, pk = y[kept], pred[kept]
        pos, neg = yk == 1, yk == 0
        rows.append({
            "referred": fraction,
            "referred images": n_ref,
            "kept images": int(kept.size),
            "sensitivity": float(np.mean(pk[pos] == 1)) if pos.any() else float("nan"),
            "specificity": float(np.mean(pk[neg] == 0)) if neg.any() else float("nan"),
            "accuracy": float(np.mean(pk == yk)),
            "PNEUMONIA among referred": float(np.mean(y[referred] == 1)) if n_ref else float("nan"),
        })
    return pd.DataFrame(rows).set_index("referred")


# --------------------------------------------------------------------------- cached ensemble


def cached_ensemble(name: str = "paper_cnn", profile: Any = "quick", *, seeds: Sequence[int] | None = None,
                    members: int = 3, head: str = "sigmoid", verbose: int = 0) -> list:
    """Scratch CNNs that differ only in their training seed, from the model cache (trained once).

    Every member trains on the profile's data set and split (both from ``profile.seed``); its
    training seed (initialisation, batch order, augmentation) is ``seeds[i]``. The member
    whose seed is the profile's is the very model :func:`pneumo_lib.experiments.cached_training`
    returns for ``name`` (same cache entry).

    Args:
        name: A scratch CNN (``"paper_cnn"`` or ``"project_b_cnn"``).
        profile: Profile name or object.
        seeds: Training seeds; default the profile's seed followed by 1, 2, ... (``members`` in all).
        members: Ensemble size when ``seeds`` is None (>= 2).
        head: ``"sigmoid"`` or ``"softmax"``.
        verbose: Keras verbosity while training.

    Returns:
        A list of :class:`pneumo_lib.experiments.CachedModel`, one per seed.
    """
    from pneumo_lib import data, experiments, models, training
    from pneumo_lib.data.staging import one_writer
    from pneumo_lib.profiles import Profile, get_profile

    P = profile if isinstance(profile, Profile) else get_profile(profile)
    if models.architecture(name).family != "scratch":
        raise ValueError(f"cached_ensemble trains scratch CNNs (paper_cnn, project_b_cnn); got {name!r}.")
    if seeds is None:
        if members < 2:
            raise ValueError(f"An ensemble needs at least two members, got {members}.")
        seeds = [P.seed] + [s for s in range(1, members + 10) if s != P.seed][: members - 1]
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds) or len(seeds) < 2:
        raise ValueError(f"An ensemble needs at least two distinct seeds, got {seeds}.")
    manifest = data.make_splits(data.ensure_dataset(P), seed=P.seed)
    runs = []
    for seed in seeds:
        if seed == P.seed:
            runs.append(experiments.cached_training(name, P, head=head, weights=None, verbose=verbose))
            continue
        member = get_profile(P, seed=seed)
        recipe = experiments.Recipe(name, member, head, None, None, "all", train_backbone=False)
        path = experiments.cache_path(recipe, manifest)
        cached = experiments.finished_training(path)
        if cached is None:
            with one_writer(path):  # another process may be training this member: wait, look again
                cached = experiments.finished_training(path)
                if cached is None:
                    result, _ = experiments.fit_recipe(
                        recipe, manifest, path,
                        card={"shortcut": False, "ensemble_seed": seed, "data_seed": P.seed}, verbose=verbose)
        if cached is not None:
            runs.append(cached)
            continue
        card = training.read_card(path)
        model = decision.attach_temperature(decision.attach_threshold(result.model, card), card)
        runs.append(experiments.CachedModel(model, path, card, trained_now=True))
    return runs


# --------------------------------------------------------------------------- the referral flag of one image

#: Share of the validation images :func:`referral_level` refers by default (the chapter's "a tenth").
DEFAULT_REFERRAL_FRACTION = 0.1
#: Referral level (bits of :func:`threshold_entropy`) of a model whose card holds none:
#: ``binary_entropy(0.25)`` = 0.811 bits. An image is above it exactly when its odds of
#: PNEUMONIA are within a factor of 3 of the threshold's odds (``|logit(p) - logit(threshold)| < ln 3``).
DEFAULT_REFERRAL_LEVEL = float(binary_entropy(0.25))
#: The uncertainty the referral level is measured in (the chapter's referral measure).
REFERRAL_MEASURE = "threshold_entropy"
#: Attribute under which a loaded model carries its card's referral entry (or ``None``).
REFERRAL_ATTRIBUTE = "pneumo_referral"
#: The flag the explorer and the app show above the referral level.
REFERRAL_FLAG = "Uncertain: refer to a radiologist"


def check_fraction(fraction: Any) -> float:
    """``fraction`` as a float strictly inside (0, 1).

    Raises:
        ValueError: Not a number, NaN, or outside (0, 1) (referring none or all of the
            images defines no level).
    """
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise ValueError(f"The referred fraction must be a number in (0, 1), got {fraction!r}.") from None
    if isinstance(fraction, bool) or not 0.0 < value < 1.0:
        raise ValueError(f"The referred fraction must be strictly between 0 and 1 (e.g. 0.1 for a tenth), "
                         f"got {fraction!r}.")
    return value


def check_referral_level(level: Any) -> float:
    """``level`` as a float in [0, 1] (bits of :func:`threshold_entropy`, which never exceeds 1).

    Raises:
        ValueError: Not a number, NaN, or outside [0, 1].
    """
    try:
        value = float(level)
    except (TypeError, ValueError):
        raise ValueError(f"A referral level must be a number of bits in [0, 1], got {level!r}.") from None
    if isinstance(level, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"A referral level must be in [0, 1] bits (the entropy of a binary prediction), "
                         f"got {level!r}.")
    return value


def referral_level(p: Any, threshold: Any = decision.DEFAULT_THRESHOLD,
                   fraction: Any = DEFAULT_REFERRAL_FRACTION) -> float:
    """The uncertainty above which the ``fraction`` most uncertain of these (validation) images lie.

    The measure is the chapter's: ``u = threshold_entropy(p, threshold)`` (bits). The images
    are sorted by ``u``, most uncertain first, and ``n = round(fraction * N)`` are referred,
    as :func:`referral` refers them; the level is halfway between the least uncertain
    referred image and the most uncertain kept one, ``(u_(n) + u_(n+1)) / 2``. An image is
    then flagged when its uncertainty is *above* the level (:func:`refer`), so the ``n``
    referred validation images are flagged and the others are not (when ``u_(n) = u_(n+1)``,
    the tied images sit at the level and are not flagged: fewer than ``n`` are).

    Args:
        p: P(PNEUMONIA) of the validation images, ``(N,)`` in [0, 1], on the scale the
            threshold is on (the model's own, uncalibrated probability and its card threshold).
        threshold: The decision threshold in (0, 1).
        fraction: Share of the images to refer, in (0, 1) (default 0.1).

    Returns:
        The level in bits, a float in [0, 1].

    Raises:
        ValueError: Bad probabilities or threshold, ``fraction`` outside (0, 1), or a
            fraction that refers none or all of the ``N`` images.
    """
    share = check_fraction(fraction)
    u = threshold_entropy(p, threshold)
    n = int(round(share * u.size))
    if not 0 < n < u.size:
        raise ValueError(
            f"Referring a fraction of {share:g} of {u.size} images refers {n} of them (round({share:g} * {u.size})), "
            "which defines no level between referred and kept images: use more validation images or "
            "another fraction.")
    ranked = np.sort(u)[::-1]
    return float(np.clip((ranked[n - 1] + ranked[n]) / 2.0, 0.0, 1.0))


def refer(p: Any, threshold: Any = decision.DEFAULT_THRESHOLD, level: Any = DEFAULT_REFERRAL_LEVEL) -> np.ndarray:
    """The referral flag: True where ``threshold_entropy(p, threshold) > level``.

    The flag comes *in addition to* the predicted class (:func:`pneumo_lib.decision.predicted_class`
    at the same threshold), never instead of it.

    Args:
        p: P(PNEUMONIA) ``(N,)`` in [0, 1].
        threshold: The decision threshold in (0, 1).
        level: Referral level in bits, in [0, 1] (:func:`referral_level`, or
            :data:`DEFAULT_REFERRAL_LEVEL`).

    Returns:
        ``bool (N,)``.
    """
    return threshold_entropy(p, threshold) > check_referral_level(level)


@dataclass(frozen=True)
class ReferralLevel:
    """The referral level a model uses and where it came from.

    Attributes:
        level: Bits of :func:`threshold_entropy`, in [0, 1].
        stored: True when it comes from the model card (``card["referral"]``, computed on
            the validation split by :func:`calibrate_referral`), False for
            :data:`DEFAULT_REFERRAL_LEVEL`.
        fraction: The validation share it refers (in (0, 1)), when stored.
        images: Validation images it was computed on, when stored.
        split: The split it was computed on (``"val"``), when stored.
        referred: Validation images above the level, when stored.
    """

    level: float = DEFAULT_REFERRAL_LEVEL
    stored: bool = False
    fraction: float | None = None
    images: int | None = None
    split: str | None = None
    referred: int | None = None

    def source(self) -> str:
        """Where the level came from, one phrase, e.g. ``"the uncertainty above which 10% of the
        validation images (25 of 250) lie, stored in the model card"`` or ``"the default (odds
        within a factor of 3 of the threshold's); the model card holds no referral level"``."""
        if not self.stored:
            return "the default (odds within a factor of 3 of the threshold's); the model card holds no referral level"
        share = f"{self.fraction:.0%}" if self.fraction is not None else "a share"
        split = {"val": "validation"}.get(self.split or "val", self.split)
        of = f" ({self.referred} of {self.images})" if self.referred is not None and self.images else ""
        return f"the uncertainty above which {share} of the {split} images{of} lie, stored in the model card"

    def note(self) -> str:
        """``"referral level <level:.2f> bits: <source>"`` (:meth:`source`)."""
        return f"referral level {self.level:.2f} bits: {self.source()}"


def referral_from_card(card: Any) -> ReferralLevel:
    """The referral level stored in a model card (``card["referral"]``), else the default.

    Raises:
        ValueError: The card stores a level outside [0, 1].
    """
    entry = (card or {}).get("referral") or {}
    if entry.get("level") is None:
        return ReferralLevel()
    fraction, images, referred = entry.get("fraction"), entry.get("images"), entry.get("referred_images")
    return ReferralLevel(check_referral_level(entry["level"]), True,
                         None if fraction is None else float(fraction),
                         None if images is None else int(images), entry.get("fitted_on"),
                         None if referred is None else int(referred))


def attach_referral_level(model: Any, card: Any) -> Any:
    """Give a model its card's referral level (:func:`model_referral_level`); returns the model.

    :func:`pneumo_lib.decision.attach_temperature` calls it with the card, so every model
    loaded by :func:`pneumo_lib.training.load_model` (and the model cache) carries its card's
    level, or the default when the card has none.
    """
    setattr(model, REFERRAL_ATTRIBUTE, referral_from_card(card))
    return model


def model_referral_level(model: Any = None, level: Any = None) -> ReferralLevel:
    """The referral level for ``model``: ``level`` if given, else the one the model carries, else the default.

    Args:
        model: A Keras model or ``None``.
        level: An explicit level in bits in [0, 1] (reported as not from the card), or ``None``.

    Returns:
        A :class:`ReferralLevel`.
    """
    if level is not None:
        return ReferralLevel(check_referral_level(level), False) if not isinstance(level, ReferralLevel) else level
    stored = getattr(model, REFERRAL_ATTRIBUTE, None) if model is not None else None
    return stored if isinstance(stored, ReferralLevel) else ReferralLevel()


def calibrate_referral(run: Any, manifest: Any, profile: Any, *, fraction: Any = DEFAULT_REFERRAL_FRACTION,
                       split: str = "val", write_card: bool = True) -> dict:
    """Compute a model's referral level on its validation split and store it in its model card.

    The level is :func:`referral_level` of the model's own P(PNEUMONIA) on ``split`` at its
    decision threshold (:func:`pneumo_lib.decision.model_threshold`), stored as
    ``card["referral"]`` (beside ``card["calibration"]``, where the temperature is); the
    model is given it (:func:`attach_referral_level`). The uncalibrated scale makes the level
    independent of any temperature fitted before or after (temperature scaling keeps the
    order of the images, so it would flag the same ones).

    Args:
        run: A :class:`pneumo_lib.experiments.CachedModel` (``model``, ``path``, ``card``).
        manifest: The :class:`~pneumo_lib.data.SplitManifest` the model was trained on.
        profile: The profile (``image_size``).
        fraction: Share of the validation images to refer, in (0, 1).
        split: The split to compute it on (``"val"``; never ``"test"``).
        write_card: Write the card file (else only the in-memory card and model change).

    Returns:
        The card's ``"referral"`` entry: ``level`` (bits, [0, 1]), ``fraction``, ``measure``,
        ``threshold``, ``fitted_on``, ``images`` and ``referred_images`` (validation images
        above the level).
    """
    from pneumo_lib import data

    share = check_fraction(fraction)
    if split == "test":
        raise ValueError("Compute the referral level on the validation split, not on test (test is for reporting).")
    channels = int(run.model.inputs[0].shape[-1])
    x, _ = data.load_split(manifest, split, profile.image_size, channels=channels)
    p = predict_probability(run.model, x)
    cut = decision.model_threshold(run.model)
    level = referral_level(p, cut, share)
    entry = {
        "level": level,
        "fraction": share,
        "measure": f"{REFERRAL_MEASURE}: binary entropy (bits) of P(PNEUMONIA) re-centred on the decision threshold",
        "threshold": cut,
        "fitted_on": split,
        "images": int(p.size),
        "referred_images": int(refer(p, cut, level).sum()),
    }
    run.card["referral"] = entry
    if write_card and getattr(run, "path", None) is not None:
        from pneumo_lib import training

        training.write_card(run.path, run.card)
    attach_referral_level(run.model, run.card)
    return entry
