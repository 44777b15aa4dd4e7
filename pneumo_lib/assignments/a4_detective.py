"""Assignment 4, detective work: what does the mystery model really look at?

The mystery model is the library's ``project_b_cnn`` trained (quick profile) on the phantom
*shortcut* variant, where every PNEUMONIA training image (and 2% of NORMAL ones) carries a
bright ring marker; the student learns about the ring, not what the model made of it. (It is
the same cached model as the trust chapter's shortcut experiment, so the book build and CI
train it once.) The evidence is a controlled experiment on the first :data:`N_IMAGES`
PNEUMONIA test images, which carry no ring: each is shown as it is and with a ring pasted in
(:func:`pneumo_lib.data.paste_markers`), so the two versions differ by the ring only. The
answers are numbers the check recomputes with the library on the same images
(:func:`evidence`), within :data:`TOLERANCE`:

* q1 ``heat_on_marker``: the mean share of Grad-CAM heat that lies on the pasted ring;
* q2 ``prob_drop``: how much the mean P(PNEUMONIA) falls when the same images come
  without the ring;
* q3 ``looks_at``: ``"marker"`` or ``"lesion"``, judged from q2: the model relies on the
  marker when removing it takes away at least half of its mean confidence.
"""

from __future__ import annotations

import functools

import numpy as np

from pneumo_lib.assignments.core import ____, Assignment, Question, Wrong

__all__ = ["q1", "q2", "q3", "____", "ASSIGNMENT", "mystery_model", "evidence", "N_IMAGES"]

ID = "a4_detective"
#: How many PNEUMONIA test images the questions use.
N_IMAGES = 32
#: Allowed absolute difference of the numeric answers.
TOLERANCE = 0.02


def mystery_model():
    """The mystery model (trained and cached on first use; about a minute on a CPU)."""
    from pneumo_lib import experiments

    return experiments.cached_model("project_b_cnn", "quick", shortcut=True)


@functools.lru_cache(maxsize=1)
def evidence() -> dict[str, float | str]:
    """The check's own answers: ``heat_on_marker``, ``prob_drop``, ``p_marked``, ``looks_at``."""
    from pneumo_lib import cam, data
    from pneumo_lib.profiles import get_profile

    profile = get_profile("quick")
    marked_dir = data.ensure_dataset(profile, shortcut=True)
    manifest = data.make_splits(marked_dir, seed=profile.seed)
    chosen = [r for r in manifest.select("test") if r.label == 1][:N_IMAGES]
    plain = data.load_images([marked_dir / r.path for r in chosen], profile.image_size)
    ringed, rings = data.paste_markers(plain, marked_dir)
    model = mystery_model()
    heat = cam.grad_cam(model, ringed, class_index=1)
    share = (heat * rings).sum(axis=(1, 2)) / np.maximum(heat.sum(axis=(1, 2)), 1e-12)
    p_marked = model.predict(ringed, verbose=0)[:, -1].astype(np.float64)
    p_clean = model.predict(plain, verbose=0)[:, -1].astype(np.float64)
    drop = float(p_marked.mean() - p_clean.mean())
    return {"heat_on_marker": float(share.mean()), "prob_drop": drop, "p_marked": float(p_marked.mean()),
            "looks_at": "marker" if drop >= 0.5 * p_marked.mean() else "lesion"}


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise Wrong(f"Answer {name} with a number; got {value!r}.")
    return float(value)


def _verify_heat(heat_on_marker) -> None:
    got, want = _number(heat_on_marker, "heat_on_marker"), evidence()["heat_on_marker"]
    if not 0 <= got <= 1:
        raise Wrong(f"A share of the heat lies between 0 and 1; got {got:.3g}.")
    if abs(got - want) > TOLERANCE:
        raise Wrong(f"{got:.3f} is not the mean share of Grad-CAM heat on the marker for those "
                    f"{N_IMAGES} images (off by more than {TOLERANCE}).")


def _verify_drop(prob_drop) -> None:
    got, want = _number(prob_drop, "prob_drop"), evidence()["prob_drop"]
    if abs(got + want) <= TOLERANCE < abs(got - want):
        raise Wrong("Your number has the wrong sign: marked minus clean, not clean minus marked.")
    if abs(got - want) > TOLERANCE:
        raise Wrong(f"{got:.3f} is not the fall of the mean P(PNEUMONIA) from the marked images to "
                    f"the same images without it (off by more than {TOLERANCE}).")


def _verify_looks_at(looks_at) -> None:
    if looks_at not in ("marker", "lesion"):
        raise Wrong(f"Answer 'marker' or 'lesion'; got {looks_at!r}.")
    if looks_at != evidence()["looks_at"]:
        raise Wrong(f"Your own evidence disagrees with {looks_at!r}: compare prob_drop with the mean "
                    "P(PNEUMONIA) on the marked images.")


q1 = Question(
    ID, "q1", "share of Grad-CAM heat on the marker", ["heat_on_marker"], _verify_heat, points=2,
    hint="For each image: (heatmap * ring_mask).sum() / heatmap.sum(), with "
         "cam.grad_cam(mystery, ringed, class_index=1) and the masks data.paste_markers returned; then the mean.",
)
q2 = Question(
    ID, "q2", "fall in P(PNEUMONIA) without the marker", ["prob_drop"], _verify_drop, points=2,
    hint="Predict the ringed images and the plain ones (the same images without the ring) "
         "and subtract the means: ringed minus plain.",
)
q3 = Question(
    ID, "q3", "what the model looks at", ["looks_at"], _verify_looks_at, points=1,
    hint="If taking the marker away removes most of the model's confidence, the marker is what it "
         "relies on, whatever the lesions look like.",
)

ASSIGNMENT = Assignment(
    ID, "Assignment 4: Detective work on a mystery model", 45,
    ("use Grad-CAM maps and masks to measure where a model looks",
     "test a suspicion with a controlled experiment (the same images with and without the marker)",
     "recognise a shortcut: a model that is right for the wrong reason"),
    (q1, q2, q3),
)
