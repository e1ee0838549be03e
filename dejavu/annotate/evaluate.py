"""Detector quality against known boxes: per-class recall at an IoU threshold."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the intersection over union of every pair of boxes.

    Parameters
    ----------
    a : numpy.ndarray, shape (n, 4)
    b : numpy.ndarray, shape (m, 4)
        Boxes as ``[x1, y1, x2, y2]``.

    Returns
    -------
    numpy.ndarray, shape (n, m)
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def per_class_recall(
    truth_labels: Sequence[Sequence[str]],
    truth_boxes: Sequence[np.ndarray],
    predicted_labels: Sequence[Sequence[str]],
    predicted_boxes: Sequence[np.ndarray],
    *,
    iou: float = 0.5,
) -> dict[str, tuple[int, int]]:
    """Count, per class, the true boxes that a prediction of that class recovers.

    Within each image and class, true and predicted boxes are matched greedily by
    descending IoU, and each box is used at most once. A pair counts when its IoU is
    at least ``iou``.

    Returns
    -------
    dict
        Class name to ``(found, instances)``; recall is ``found / instances``.
    """
    found: Counter = Counter()
    total: Counter = Counter()
    for t_labels, t_boxes, p_labels, p_boxes in zip(
        truth_labels, truth_boxes, predicted_labels, predicted_boxes, strict=True
    ):
        t_labels = np.asarray(list(t_labels), dtype=object)
        p_labels = np.asarray(list(p_labels), dtype=object)
        t_boxes = np.asarray(t_boxes, np.float64).reshape(-1, 4)
        p_boxes = np.asarray(p_boxes, np.float64).reshape(-1, 4)
        for name in set(t_labels):
            truth = t_boxes[t_labels == name]
            total[name] += len(truth)
            predicted = p_boxes[p_labels == name] if len(p_labels) else p_boxes[:0]
            if not len(predicted):
                continue
            overlaps = box_iou(truth, predicted)
            while overlaps.size and overlaps.max() >= iou:
                i, j = np.unravel_index(overlaps.argmax(), overlaps.shape)
                found[name] += 1
                overlaps[i, :] = -1
                overlaps[:, j] = -1
    return {name: (found[name], total[name]) for name in sorted(total)}
