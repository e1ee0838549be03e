"""Utility of a CLIP checkpoint on a labelled manifest: zero-shot and linear probe.

Two kinds of labels are understood. A ``label`` column (one class per record) makes a
single-label task scored by top-1 accuracy. Otherwise the ``objects`` column (a list
of labels per record) makes a multi-label task scored by mean average precision (mAP)
over the classes. The classes are the distinct labels of the manifest.

- **Zero-shot**: each class is embedded as the renormalised mean of its text
  embeddings under several prompt templates ("a photo of a {}."). An image's score
  for a class is the cosine similarity of the two embeddings. Scored on every record.
- **Linear probe**: logistic regression (scikit-learn) on the frozen, standardised
  image embeddings, trained on a seeded 80 % of the records and scored on the other
  20 % (one binary classifier per class for multi-label).

Each score comes with the score of chance on the same records. For mAP that is the
mean prevalence of the scored classes (the expected average precision of a random
ranking). For accuracy it is the frequency of the most common class, which is what
always predicting that class scores.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from dejavu._io import package_versions, sha256_file
from dejavu.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image with a {}.",
    "a scene with a {}.",
    "there is a {} in the picture.",
)


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike,
    *,
    model: str | None = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    test_fraction: float = 0.2,
    probe_c: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
    device: str = "auto",
    skip_bad_records: bool = False,
    progress: bool = True,
) -> dict:
    """Measure the zero-shot and linear-probe utility of a CLIP model.

    Parameters
    ----------
    checkpoint : path-like or str
        Checkpoint file or pretrained name, in any form
        :func:`dejavu.models.load_clip` accepts.
    data : path-like
        Labelled manifest with ``id``, ``image`` and either ``label`` (single-label)
        or ``objects`` (multi-label).
    model : str, optional
        Architecture of a checkpoint that carries no model config.
    templates : sequence of str, default=DEFAULT_TEMPLATES
        Zero-shot prompt templates, each with one ``{}`` for the class name.
    test_fraction : float, default=0.2
        Fraction of records held out to score the linear probe.
    probe_c : float, default=1.0
        Inverse regularisation strength ``C`` of the logistic regression.
    seed : int, default=0
        Seed of the train/test split and the logistic regression.
    batch_size : int, default=64
        Images per forward pass.
    device : str, default="auto"
        Device for the model.
    skip_bad_records : bool, default=False
        Leave out records with missing or undecodable images instead of raising.
    progress : bool, default=True
        Show a progress bar while embedding images.

    Returns
    -------
    dict
        JSON-ready result: ``task`` (``"single-label"`` or ``"multi-label"``),
        ``metric`` (``"accuracy"`` or ``"mean_average_precision"``), ``classes``,
        ``zero_shot`` and ``linear_probe`` (each with ``value``, ``chance`` and the
        counts behind them), ``inputs``, ``settings`` and ``versions``.

    Raises
    ------
    InputError
        If the manifest has no labels, fewer than two classes, or too few records
        for the split, or a template has no ``{}``.
    ModelLoadError
        If the checkpoint cannot be loaded.
    """
    from dejavu.data.manifest import iter_image_batches, read_manifest
    from dejavu.models import load_clip

    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test fraction {test_fraction!r} is outside (0, 1)")
    if not templates or any("{}" not in t for t in templates):
        raise InputError(
            f"every zero-shot template needs a '{{}}' for the class name: {templates!r}"
        )
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size!r}")

    records = read_manifest(
        data,
        set_name="evaluation set",
        require=("id", "image"),
        skip_bad_records=skip_bad_records,
    )
    task, classes, targets = _targets(records)
    encoder = load_clip(checkpoint, model=model, device=device)

    refs = records.frame["image"].tolist()
    chunks = []
    batches = iter_image_batches(refs, batch_size)
    total = -(-len(refs) // batch_size)
    for images in tqdm(batches, total=total, disable=not progress, desc="evaluate"):
        chunks.append(encoder.encode_images(images))
    image_embeddings = np.concatenate(chunks)  # (N, D), unit rows
    class_embeddings = _class_embeddings(encoder, classes, templates)  # (C, D)

    scores = image_embeddings @ class_embeddings.T  # (N, C) cosine similarities
    zero_shot = _score(task, targets, scores)
    probe = _linear_probe(task, image_embeddings, targets, test_fraction, probe_c, seed)

    metric = "accuracy" if task == "single-label" else "mean_average_precision"
    return {
        "task": task,
        "metric": metric,
        "classes": classes,
        "records": len(records.frame),
        "zero_shot": zero_shot,
        "linear_probe": probe,
        "inputs": {
            "checkpoint": str(getattr(encoder, "source", checkpoint)),
            "checkpoint_sha256": getattr(encoder, "sha256", None),
            "model_name": encoder.model_name,
            "data": str(records.path),
            "data_sha256": sha256_file(records.path)
            if records.path.is_file()
            else None,
            "skipped_records": len(records.skipped),
        },
        "settings": {
            "templates": list(templates),
            "test_fraction": test_fraction,
            "probe_c": probe_c,
            "seed": seed,
            "batch_size": batch_size,
            "device": str(encoder.device),
        },
        "versions": package_versions(),
    }


def _targets(records) -> tuple[str, list[str], np.ndarray]:
    """Return the task, the sorted class names and the targets.

    Targets are class indices of shape (N,) for single-label, or a 0/1 matrix of
    shape (N, C) for multi-label.
    """
    frame = records.frame
    if "label" in frame.columns:
        labels = [None if v is None else str(v).strip() for v in frame["label"]]
        empty = [i for i, v in enumerate(labels) if not v or v == "nan"]
        if empty:
            row = frame.iloc[empty[0]]
            raise InputError(
                f"evaluation set {records.path}: record {row['id']!r} (row "
                f"{row['row']}) has an empty label; give every record a label"
            )
        classes = sorted(set(labels))
        index = {name: i for i, name in enumerate(classes)}
        targets = np.array([index[v] for v in labels], dtype=np.int64)
        task = "single-label"
    elif "objects" in frame.columns:
        lists = [list(v) if v is not None else [] for v in frame["objects"]]
        classes = sorted({label for labels in lists for label in labels})
        index = {name: i for i, name in enumerate(classes)}
        targets = np.zeros((len(lists), len(classes)), dtype=np.int8)
        for i, labels in enumerate(lists):
            targets[i, [index[label] for label in labels]] = 1
        task = "multi-label"
    else:
        raise InputError(
            f"evaluation set {records.path} has neither a 'label' nor an 'objects' "
            "column; add one of them to score utility"
        )
    if len(classes) < 2:
        raise InputError(
            f"evaluation set {records.path} has {len(classes)} class(es); utility "
            "needs at least two"
        )
    return task, classes, targets


def _class_embeddings(encoder, classes: Sequence[str], templates) -> np.ndarray:
    """Embed each class as the renormalised mean of its prompt embeddings."""
    rows = []
    for name in classes:
        prompts = [template.format(name) for template in templates]
        mean = encoder.encode_texts(prompts).mean(axis=0)  # (D,)
        rows.append(mean / np.linalg.norm(mean))
    return np.stack(rows).astype(np.float32)  # (C, D)


def _score(task: str, targets: np.ndarray, scores: np.ndarray) -> dict:
    """Score class scores (N, C) against targets, with chance on the same records."""
    if task == "single-label":
        predicted = scores.argmax(axis=1)
        counts = np.bincount(targets, minlength=scores.shape[1])
        return {
            "value": float(np.mean(predicted == targets)),
            "chance": float(counts.max() / len(targets)),
            "records": int(len(targets)),
            "classes_scored": int(np.count_nonzero(counts)),
        }
    return _mean_average_precision(targets, scores)


def _mean_average_precision(targets: np.ndarray, scores: np.ndarray) -> dict:
    from sklearn.metrics import average_precision_score

    positives = targets.sum(axis=0)
    # Average precision is undefined without positives and is always 1 without
    # negatives, so such classes are left out of the mean and of chance alike.
    scored = np.flatnonzero((positives > 0) & (positives < len(targets)))
    if scored.size == 0:
        return {
            "value": None,
            "chance": None,
            "records": int(len(targets)),
            "classes_scored": 0,
        }
    precisions = [average_precision_score(targets[:, c], scores[:, c]) for c in scored]
    return {
        "value": float(np.mean(precisions)),
        "chance": float(np.mean(positives[scored] / len(targets))),
        "records": int(len(targets)),
        "classes_scored": int(scored.size),
    }


def _linear_probe(task, embeddings, targets, test_fraction, c, seed) -> dict:
    """Fit logistic regression on a seeded split and score the held-out part."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = len(embeddings)
    n_test = int(round(n * test_fraction))
    if n_test < 1 or n - n_test < 2:
        raise InputError(
            f"{n} records are too few for a linear probe with test fraction "
            f"{test_fraction}; give more records"
        )
    order = np.random.default_rng(seed).permutation(n)
    test, train = order[:n_test], order[n_test:]

    def classifier():
        return make_pipeline(
            StandardScaler(),
            LogisticRegression(C=c, max_iter=2000, random_state=seed),
        )

    if task == "single-label":
        classes_seen = np.unique(targets[train])
        if classes_seen.size < 2:
            raise InputError("the probe's training split has only one class")
        probe = classifier().fit(embeddings[train], targets[train])
        predicted = probe.predict(embeddings[test])
        majority = np.bincount(targets[train]).argmax()
        result = {
            "value": float(np.mean(predicted == targets[test])),
            "chance": float(np.mean(targets[test] == majority)),
            "records": int(n_test),
            "classes_scored": int(np.unique(targets[test]).size),
        }
    else:
        # One binary classifier per class. A class constant on the training split
        # cannot be fitted; its scores are the constant, so its AP equals chance.
        scores = np.zeros((n_test, targets.shape[1]), dtype=np.float64)
        for k in range(targets.shape[1]):
            y = targets[train, k]
            if y.min() == y.max():
                scores[:, k] = float(y[0])
                continue
            probe = classifier().fit(embeddings[train], y)
            scores[:, k] = probe.decision_function(embeddings[test])
        result = _mean_average_precision(targets[test], scores)
    result["train_records"] = int(train.size)
    return result
