"""scikit-learn's handwritten digits (1797 grey 8x8 images, shipped inside the sklearn wheel),
split 80/20, stratified and seeded, so the trained zoo CNN is scored on images it never saw."""

from __future__ import annotations

import numpy as np


def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels): images float32 [n, 1, 8, 8] in
    [0, 1], labels int64 [n]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    labels = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=0.2, stratify=labels, random_state=0
    )
    return train_x, train_y, test_x, test_y


def test_split() -> tuple[np.ndarray, np.ndarray]:
    """The held-out images and labels the zoo's digits model is scored on."""
    _, _, images, labels = split()
    return images, labels
