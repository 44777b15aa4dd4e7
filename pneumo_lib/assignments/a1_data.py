"""Assignment 1, data: class weights, a patient-grouped stratified split, and the leak it prevents.

The checks never use the dataset the student works on: class weights are compared with
:func:`pneumo_lib.data.class_weights` on fresh random labels, and the split is run on
made-up datasets (Kaggle-style file names, several images per patient, 1:3 class
imbalance) with other fractions and seeds. Only q3, a number about the quick profile's
phantom dataset, is recomputed on that dataset.
"""

from __future__ import annotations

import numpy as np

from pneumo_lib import data
from pneumo_lib.assignments.core import ____, Assignment, NotAttempted, Question, Wrong, is_blank

__all__ = ["q1", "q2", "q3", "____", "ASSIGNMENT", "unseen_records"]

ID = "a1_data"


# ----------------------------------------------------------------- q1: class weights


def _verify_weights(compute_class_weights) -> None:
    rng = np.random.default_rng(20261)
    for n, share in ((40, 0.25), (103, 0.7), (8, 0.5)):
        labels = (rng.random(n) < share).astype(np.int64)
        labels[:2] = (0, 1)  # both classes present
        for given in (labels, labels.astype(np.float32), labels.tolist()):
            got = compute_class_weights(given)
            if not isinstance(got, dict) or set(got) != {0, 1}:
                raise Wrong(f"Return a dict {{0: weight_normal, 1: weight_pneumonia}}; got {got!r}.")
            want = data.class_weights(labels)
            g = np.array([float(got[0]), float(got[1])])
            w = np.array([want[0], want[1]])
            if np.allclose(g, w, rtol=1e-6):
                continue
            counts = np.bincount(labels, minlength=2)
            if np.allclose(g, w[::-1], rtol=1e-6) or np.allclose(g, counts / n, rtol=1e-6):
                raise Wrong(f"For {counts[0]} NORMAL and {counts[1]} PNEUMONIA labels you gave "
                            f"{g.round(3).tolist()}: the rarer class must get the larger weight.")
            if np.isclose(g[0] / g[1], w[0] / w[1], rtol=1e-6):
                raise Wrong(f"The ratio of your weights is right but their scale is not "
                            f"(got {g.round(3).tolist()}): the weighted classes should add up to N images.")
            raise Wrong(f"For {counts[0]} NORMAL and {counts[1]} PNEUMONIA labels you gave "
                        f"{g.round(3).tolist()}.")


q1 = Question(
    ID, "q1", "class weights", ["compute_class_weights"], _verify_weights, points=2,
    hint="Count each class (np.bincount); the weight of class c is N / (2 * N_c), so each "
         "class contributes N / 2 to the weighted loss.",
)


# ----------------------------------------------------------------- q2: grouped split


def unseen_records(seed: int, n_normal: int = 30, n_pneumonia: int = 45) -> list:
    """A made-up dataset: ``ImageRecord``s with 1-4 NORMAL and 1-6 PNEUMONIA images per patient."""
    rng = np.random.default_rng(seed)
    records = []
    for p in range(n_normal):
        for i in range(int(rng.integers(1, 5))):
            name = f"NORMAL2-IM-{1000 + p:04d}-{i + 1:04d}.jpeg"
            records.append(data.ImageRecord(f"train/NORMAL/{name}", "train", 0, data.patient_id(name, 0)))
    for p in range(n_pneumonia):
        kind = ("bacteria", "virus")[p % 2]
        for i in range(int(rng.integers(1, 7))):
            name = f"person{3000 + p}_{kind}_{7000 + 10 * p + i}.jpeg"
            records.append(data.ImageRecord(f"train/PNEUMONIA/{name}", "train", 1, data.patient_id(name, 1)))
    order = rng.permutation(len(records))
    return [records[i] for i in order]


def _as_list(value, what: str) -> list:
    try:
        return list(value)
    except TypeError:
        raise Wrong(f"{what} must be a list of records; got {type(value).__name__}.") from None


def _verify_split(split_by_patient) -> None:
    for seed, fraction in ((5, 0.2), (11, 0.3)):
        records = unseen_records(seed)
        out = split_by_patient(list(records), fraction, seed)
        if is_blank(out) or out is None:
            raise NotAttempted()
        if not isinstance(out, tuple) or len(out) != 2:
            raise Wrong("Return a pair (train_records, val_records).")
        train, val = _as_list(out[0], "train_records"), _as_list(out[1], "val_records")
        given = sorted(r.path for r in train + val)
        if given != sorted(r.path for r in records):
            missing = len({r.path for r in records} - set(given))
            raise Wrong(f"Every record must land in exactly one of train and val: {missing} missing, "
                        f"{len(given) - len(set(given))} duplicated, {len(records)} expected.")
        leaked = {(r.label, r.patient) for r in train} & {(r.label, r.patient) for r in val}
        if leaked:
            example = sorted(leaked)[0][1]
            raise Wrong(f"{len(leaked)} patients have images in both train and val (e.g. {example}): "
                        "that leaks patients into validation.")
        for label, name in enumerate(data.CLASSES):
            n_all = sum(r.label == label for r in records)
            n_val = sum(r.label == label for r in val)
            biggest = max(np.unique([r.patient for r in records if r.label == label], return_counts=True)[1])
            if abs(n_val / n_all - fraction) > biggest / n_all + 0.02:
                raise Wrong(f"With val_fraction={fraction}, validation holds {n_val} of {n_all} {name} "
                            f"images ({n_val / n_all:.0%}); each class should get about {fraction:.0%}.")
        again = split_by_patient(list(records), fraction, seed)
        if sorted(r.path for r in again[1]) != sorted(r.path for r in val):
            raise Wrong("The same seed must give the same split; seed your random generator.")


q2 = Question(
    ID, "q2", "patient-grouped stratified split", ["split_by_patient"], _verify_split, points=3,
    hint="Work class by class: collect each class's patients (record.patient), shuffle them with "
         "np.random.default_rng(seed), and move whole patients into validation until that class's "
         "validation images reach val_fraction of the class.",
)


# ----------------------------------------------------------------- q3: the leak, measured


def leaked_patients_truth() -> int:
    """Patients shared by train and val in a naive random split of the quick phantom dataset."""
    folder = data.ensure_dataset("quick")
    return len(data.shared_patients(data.naive_random_split(folder, seed=42)))


def _verify_leak(leaked_patients) -> None:
    if not isinstance(leaked_patients, (int, np.integer)) or isinstance(leaked_patients, bool):
        raise Wrong(f"Answer with a whole number of patients; got {leaked_patients!r}.")
    truth = leaked_patients_truth()
    if leaked_patients != truth:
        raise Wrong(f"{leaked_patients} is not the number of patients with images in both train and val "
                    "of naive_random_split(data_dir, seed=42).")


q3 = Question(
    ID, "q3", "how many patients a naive split leaks", ["leaked_patients"], _verify_leak, points=1,
    hint="data.naive_random_split(data_dir, seed=42) ignores patients; data.shared_patients(manifest) "
         "lists the patients found in both train and val.",
)

ASSIGNMENT = Assignment(
    ID, "Assignment 1: Class weights and a leak-free split", 45,
    ("compute balanced class weights and explain why they help an imbalanced classifier",
     "split a dataset by patient, stratified by class, and test it for leakage",
     "measure how many patients a naive random split leaks"),
    (q1, q2, q3),
)
