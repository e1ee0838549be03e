"""Time the scoring of a large audit: dejavu.metrics against plain Python sets.

The workload is 1,000,000 target records with three object labels each, scored at
k=10 against 100,000 public images with three labels each from an 80-label
vocabulary, for a target and a reference model (random neighbours). Timed stages:
``predict_labels`` and ``precision_recall`` for both models, then ``summarize``
(three rankings, three top-L fractions) with and without 1,000 bootstrap
resamples. A third timing replaces ``predict_labels`` + ``precision_recall`` by
``score_neighbours``, which skips building the predicted-label matrices.

The baseline computes the same figures without the bootstrap record by record
with Python sets (label union, precision, recall, PPG, PRG, AUCG, sign-test
counts, the three rankings with ``sorted`` and the top-L means). It runs on the
first ``--python-records`` records of the same data; the two are compared by time
per record, each measured in this run. Every timing is the minimum over
``--repeats`` runs.

Usage::

    python benchmarks/bench_metrics.py
    python benchmarks/bench_metrics.py --records 200000 --python-records 20000
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy.stats import binomtest

from dejavu.metrics import (
    SetScores,
    label_matrix,
    precision_recall,
    predict_labels,
    score_neighbours,
    summarize,
)

FRACTIONS = (0.001, 0.01, 0.1)


def make_data(n_records, n_public, n_labels, k, seed):
    rng = np.random.default_rng(seed)
    vocabulary = [f"label {i}" for i in range(n_labels)]

    def three_distinct(n):
        # Three distinct labels per row: the first three of a random permutation.
        return np.argsort(rng.random((n, n_labels)), axis=1)[:, :3]

    public_columns = three_distinct(n_public)
    truth_columns = three_distinct(n_records)
    names = np.array(vocabulary, dtype=object)
    return {
        "vocabulary": vocabulary,
        "public_lists": names[public_columns].tolist(),
        "truth_lists": names[truth_columns].tolist(),
        "target_neighbours": rng.integers(0, n_public, size=(n_records, k)),
        "reference_neighbours": rng.integers(0, n_public, size=(n_records, k)),
        "min_dist": rng.random(n_records),
        "ids": np.array([f"train-{i}" for i in range(n_records)], dtype=object),
    }


def score_vectorised(data, public, truth, k, n_resamples, *, fused=False):
    """Run the dejavu.metrics pipeline; return (results entries, seconds).

    With `fused`, score_neighbours replaces predict_labels + precision_recall.
    """
    start = time.perf_counter()
    per_model = {}
    for model in ("target", "reference"):
        neighbours = data[f"{model}_neighbours"]
        if fused:
            per_model[model] = score_neighbours(neighbours, public, truth, k)
        else:
            predicted = predict_labels(neighbours, public, k)
            per_model[model] = precision_recall(truth, predicted)
    scores = SetScores(
        ids=data["ids"],
        min_dist=data["min_dist"],
        precision_target=per_model["target"][0],
        recall_target=per_model["target"][1],
        correct_target=per_model["target"][2],
        precision_reference=per_model["reference"][0],
        recall_reference=per_model["reference"][1],
        correct_reference=per_model["reference"][2],
    )
    entries = summarize(scores, k=k, fractions=FRACTIONS, n_resamples=n_resamples)
    return entries, time.perf_counter() - start


def score_python(data, n_records, k):
    """The same figures (no bootstrap) record by record; return (dict, seconds)."""
    start = time.perf_counter()
    public_sets = [set(labels) for labels in data["public_lists"]]
    truth_sets = [set(labels) for labels in data["truth_lists"][:n_records]]
    per_model = {}
    for model in ("target", "reference"):
        rows = data[f"{model}_neighbours"][:n_records].tolist()
        scores = []
        for truth, row in zip(truth_sets, rows, strict=True):
            predicted = set()
            for j in row[:k]:
                predicted |= public_sets[j]
            correct = len(predicted & truth)
            precision = correct / len(predicted) if predicted else 0.0
            scores.append((precision, correct / len(truth), correct))
        per_model[model] = scores
    target, reference = per_model["target"], per_model["reference"]
    pairs = list(zip(target, reference, strict=True))
    result = {
        "ppg": sum((a[0] > b[0]) - (a[0] < b[0]) for a, b in pairs) / n_records,
        "prg": sum((a[1] > b[1]) - (a[1] < b[1]) for a, b in pairs) / n_records,
        "aucg": sum(a[1] - b[1] for a, b in pairs) / n_records,
        "precision_wins": sum(a[0] > b[0] for a, b in pairs),
        "precision_losses": sum(a[0] < b[0] for a, b in pairs),
        "recall_wins": sum(a[1] > b[1] for a, b in pairs),
        "recall_losses": sum(a[1] < b[1] for a, b in pairs),
    }
    min_dist = data["min_dist"][:n_records].tolist()
    ids = data["ids"][:n_records].tolist()
    orders = {
        "min_dist": sorted(range(n_records), key=lambda i: (min_dist[i], ids[i])),
        "correct": sorted(
            range(n_records), key=lambda i: (-target[i][2], min_dist[i], ids[i])
        ),
        "gap": sorted(
            range(n_records),
            key=lambda i: (reference[i][2] - target[i][2], min_dist[i], ids[i]),
        ),
    }
    for ranking, order in orders.items():
        for fraction in FRACTIONS:
            size = max(1, math.floor(n_records * fraction))
            top = order[:size]
            precision_target = sum(target[i][0] for i in top) / size
            precision_reference = sum(reference[i][0] for i in top) / size
            recall_target = sum(target[i][1] for i in top) / size
            recall_reference = sum(reference[i][1] for i in top) / size
            result[(ranking, fraction)] = (
                precision_target - precision_reference,
                recall_target - recall_reference,
            )
    return result, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--public", type=int, default=100_000)
    parser.add_argument("--labels", type=int, default=80)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--python-records", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.repeats < 1 or args.python_records < 1:
        parser.error("--repeats and --python-records must be at least 1")

    data = make_data(args.records, args.public, args.labels, args.k, args.seed)
    start = time.perf_counter()
    public = label_matrix(data["public_lists"], data["vocabulary"])
    truth = label_matrix(data["truth_lists"], data["vocabulary"])
    build_seconds = time.perf_counter() - start
    print(
        f"records {args.records:,}, public {args.public:,}, labels {args.labels}, "
        f"k {args.k}, resamples {args.resamples}"
    )
    print(
        f"label_matrix (public + target set, not in the timings below): "
        f"{build_seconds:.2f} s"
    )

    with_bootstrap = min(
        score_vectorised(data, public, truth, args.k, args.resamples)[1]
        for _ in range(args.repeats)
    )
    print(f"dejavu.metrics with {args.resamples} resamples: {with_bootstrap:.2f} s")

    no_bootstrap = []
    for _ in range(args.repeats):
        entries, seconds = score_vectorised(data, public, truth, args.k, 0)
        no_bootstrap.append(seconds)
    vectorised_seconds = min(no_bootstrap)
    vectorised_per_record = vectorised_seconds / args.records
    print(
        f"dejavu.metrics without bootstrap: {vectorised_seconds:.3f} s "
        f"({vectorised_per_record * 1e6:.3f} us per record)"
    )

    fused_seconds = min(
        score_vectorised(data, public, truth, args.k, 0, fused=True)[1]
        for _ in range(args.repeats)
    )
    fused_per_record = fused_seconds / args.records
    print(
        f"same with score_neighbours: {fused_seconds:.3f} s "
        f"({fused_per_record * 1e6:.3f} us per record)"
    )

    n_python = min(args.python_records, args.records)
    python_seconds = min(
        score_python(data, n_python, args.k)[1] for _ in range(args.repeats)
    )
    python_per_record = python_seconds / n_python
    print(
        f"Python sets on {n_python:,} records: {python_seconds:.3f} s "
        f"({python_per_record * 1e6:.3f} us per record)"
    )
    print(
        f"speed-up per record: {python_per_record / vectorised_per_record:.1f}x, "
        f"with score_neighbours {python_per_record / fused_per_record:.1f}x"
    )

    # Check that both compute the same figures on the Python subsample.
    shared = ("vocabulary", "public_lists")
    subsample = {
        key: value if key in shared else value[:n_python] for key, value in data.items()
    }
    [entry], _ = score_vectorised(subsample, public, truth[:n_python], args.k, 0)
    expected, _ = score_python(data, n_python, args.k)
    for name in ("ppg", "prg", "aucg"):
        assert math.isclose(entry[name]["value"], expected[name], abs_tol=1e-9), name
    for name, metric in (("ppg", "precision"), ("prg", "recall")):
        wins, losses = expected[f"{metric}_wins"], expected[f"{metric}_losses"]
        p_value = binomtest(wins, wins + losses, 0.5).pvalue if wins + losses else 1.0
        assert math.isclose(entry[f"{name}_p_value"], p_value, rel_tol=1e-9), name
    for item in entry["top_l"]:
        gaps = expected[(item["ranking"], item["fraction"])]
        assert math.isclose(item["precision_gap"]["value"], gaps[0], abs_tol=1e-9)
        assert math.isclose(item["recall_gap"]["value"], gaps[1], abs_tol=1e-9)
    print(
        "PPG, PRG, AUCG, their sign-test p-values and top-L gaps agree with the "
        "Python sets on the subsample."
    )


if __name__ == "__main__":
    main()
