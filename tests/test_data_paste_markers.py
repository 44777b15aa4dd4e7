"""data.paste_markers with chosen donors: known answers on hand-made images, and bad donors refused.

The dataset here is drawn by hand (lossless PNGs at the size they are loaded at, so loading
changes no pixel), with a ``markers.csv`` giving each donor's box: the pasted pixels must be
exactly the donor's pixels inside its box and the target's everywhere else.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from pneumo_lib import data

SIZE = 16
# Two marked donors with their boxes (x0, y0, x1, y1), inclusive, in image pixels.
BOXES = {"val/PNEUMONIA/a.png": (4, 2, 7, 5), "train/PNEUMONIA/b.png": (10, 9, 12, 14)}


def _donor_pixels(value: int) -> np.ndarray:
    """A donor image: a gradient (so a wrong offset would show) with its own level ``value``."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    return ((value + 3 * yy + 5 * xx) % 256).astype(np.uint8)


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory):
    root = tmp_path_factory.mktemp("markers") / "chest_xray"
    pixels = {"val/PNEUMONIA/a.png": _donor_pixels(200), "train/PNEUMONIA/b.png": _donor_pixels(17),
              "val/NORMAL/n.png": np.full((SIZE, SIZE), 90, np.uint8),
              "test/PNEUMONIA/t.png": np.full((SIZE, SIZE), 40, np.uint8)}
    for rel, img in pixels.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, mode="L").save(root / rel)
    with open(root.parent / "markers.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "x0", "y0", "x1", "y1"])
        for rel, box in BOXES.items():
            w.writerow([rel, *box])
    return root, pixels


def _box_mask(box) -> np.ndarray:
    x0, y0, x1, y1 = box
    m = np.zeros((SIZE, SIZE), bool)
    m[y0:y1 + 1, x0:x1 + 1] = True
    return m


def test_marker_pixels_land_exactly_in_the_donors_box_and_nothing_else_changes(hand_made):
    root, pixels = hand_made
    rng = np.random.default_rng(0)
    targets = rng.uniform(0, 1, (3, SIZE, SIZE, 1)).astype(np.float32)
    # Donors in the order given (b first), one absolute and one relative path; image 2 reuses b.
    pasted, masks = data.paste_markers(targets, root, donors=[root / "train/PNEUMONIA/b.png",
                                                              "val/PNEUMONIA/a.png"])
    assert pasted.shape == targets.shape and pasted.dtype == np.float32 and masks.shape == (3, SIZE, SIZE)
    for i, rel in enumerate(["train/PNEUMONIA/b.png", "val/PNEUMONIA/a.png", "train/PNEUMONIA/b.png"]):
        box = _box_mask(BOXES[rel])
        np.testing.assert_array_equal(masks[i], box.astype(np.float32))
        # Inside the box: the donor's own pixels, exactly (the PNG levels / 255).
        np.testing.assert_allclose(pasted[i, ..., 0][box], pixels[rel][box] / 255.0, rtol=0, atol=1e-7)
        # Outside: the target, bit for bit.
        np.testing.assert_array_equal(pasted[i, ..., 0][~box], targets[i, ..., 0][~box])
    assert box.sum() == 3 * 6  # b's box: x 10..12, y 9..14
    # Channels follow the images: a 3-channel batch gets the gray marker in every channel.
    rgb, _ = data.paste_markers(np.zeros((1, SIZE, SIZE, 3), np.float32), root, donors=["val/PNEUMONIA/a.png"])
    a_box = _box_mask(BOXES["val/PNEUMONIA/a.png"])
    for c in range(3):
        np.testing.assert_allclose(rgb[0, ..., c][a_box], pixels["val/PNEUMONIA/a.png"][a_box] / 255.0, atol=1e-7)
        assert not rgb[0, ..., c][~a_box].any()


def test_the_default_donors_are_the_marked_pneumonia_images_of_the_folder_split(hand_made):
    root, _ = hand_made
    targets = np.zeros((2, SIZE, SIZE, 1), np.float32)
    default, m_default = data.paste_markers(targets, root)  # folder split "val": a.png only
    chosen, m_chosen = data.paste_markers(targets, root, donors=["val/PNEUMONIA/a.png"])
    np.testing.assert_array_equal(default, chosen)
    np.testing.assert_array_equal(m_default, m_chosen)
    _, m_train = data.paste_markers(targets, root, split="train")
    np.testing.assert_array_equal(m_train[0], _box_mask(BOXES["train/PNEUMONIA/b.png"]).astype(np.float32))


@pytest.mark.parametrize("donors, message", [
    (["val/NORMAL/n.png"], r"Donor val/NORMAL/n\.png carries no marker"),
    (["val/PNEUMONIA/a.png", "test/PNEUMONIA/t.png", "val/NORMAL/n.png"],
     r"Donor test/PNEUMONIA/t\.png carries no marker .*\(1 more such donor\(s\)\)"),
    ([], "donors is empty"),
    ("val/PNEUMONIA/a.png", "must be a list of image paths, not the single path"),
])
def test_bad_donors_are_refused_with_a_clear_message(hand_made, donors, message):
    root, _ = hand_made
    with pytest.raises(ValueError, match=message):
        data.paste_markers(np.zeros((1, SIZE, SIZE, 1), np.float32), root, donors=donors)


def test_donors_outside_the_dataset_or_with_a_split_are_refused(hand_made, tmp_path):
    root, _ = hand_made
    x = np.zeros((1, SIZE, SIZE, 1), np.float32)
    with pytest.raises(ValueError, match="is not inside"):
        data.paste_markers(x, root, donors=[tmp_path / "elsewhere.png"])
    with pytest.raises(ValueError, match="donors or split, not both"):
        data.paste_markers(x, root, donors=["val/PNEUMONIA/a.png"], split="val")
