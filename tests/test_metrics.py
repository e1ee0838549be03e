import json
import math
from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp

from dejavu.metrics import (
    SetScores,
    _bootstrap_means,
    _head_of_ranking,
    aucg,
    label_matrix,
    population_gap,
    precision_recall,
    predict_labels,
    rank_records,
    score_neighbours,
    sign_test,
    summarize,
    survival_curve,
    top_l_size,
)

VOCAB = ["bus", "cow", "dog", "man", "sheep"]


# ---------------------------------------------------------------- plain Python


def _python_predict(neighbours, public_sets, k, top_m=None):
    predicted = []
    for row in neighbours.tolist():
        if top_m is None:
            labels = set()
            for j in row[:k]:
                labels |= public_sets[j]
        else:
            counts = Counter(label for j in row[:k] for label in public_sets[j])
            ranked = sorted(counts, key=lambda c: (-counts[c], c))
            labels = set(ranked[:top_m])
        predicted.append(labels)
    return predicted


def _python_precision_recall(truth_sets, predicted_sets):
    precision, recall, correct = [], [], []
    for truth, predicted in zip(truth_sets, predicted_sets, strict=True):
        c = len(truth & predicted)
        precision.append(c / len(predicted) if predicted else 0.0)
        recall.append(c / len(truth))
        correct.append(c)
    return precision, recall, correct


def _python_gap(a, b):
    return sum((x > y) - (x < y) for x, y in zip(a, b, strict=True)) / len(a)


def _python_survival_area(recall):
    """Exact area under t -> #{r >= t} / n on [0, 1], summed over the steps."""
    area, previous = 0.0, 0.0
    for t in sorted(set(recall)):
        area += (t - previous) * sum(r >= t for r in recall) / len(recall)
        previous = t
    return area


def _random_problem(seed, n=400, n_public=150, n_labels=12, k_max=9):
    rng = np.random.default_rng(seed)
    # Integer labels stand for vocabulary columns in the plain implementation.
    public_sets = [
        set(rng.choice(n_labels, size=rng.integers(0, 4), replace=True).tolist())
        for _ in range(n_public)
    ]
    truth_sets = [
        set(rng.choice(n_labels, size=rng.integers(1, 5), replace=True).tolist())
        for _ in range(n)
    ]
    vocabulary = list(range(n_labels))
    neighbours = rng.integers(0, n_public, size=(n, k_max))
    return vocabulary, public_sets, truth_sets, neighbours


def _csr_to_sets(matrix):
    return [
        set(matrix.indices[a:b].tolist())
        for a, b in zip(matrix.indptr, matrix.indptr[1:])
    ]


def _scores(seed, n=300, signal=0.0):
    rng = np.random.default_rng(seed)
    n_true = rng.integers(1, 5, size=n)
    correct_t = rng.binomial(n_true, np.clip(0.4 + signal, 0, 1))
    correct_r = rng.binomial(n_true, 0.4)
    n_pred_t = correct_t + rng.integers(0, 4, size=n)
    n_pred_r = correct_r + rng.integers(0, 4, size=n)
    return SetScores(
        ids=np.array([f"r{seed}-{i}" for i in range(n)]),
        min_dist=rng.random(n),
        precision_target=np.divide(correct_t, np.maximum(n_pred_t, 1)),
        recall_target=correct_t / n_true,
        correct_target=correct_t,
        precision_reference=np.divide(correct_r, np.maximum(n_pred_r, 1)),
        recall_reference=correct_r / n_true,
        correct_reference=correct_r,
    )


# ---------------------------------------------------------------- label_matrix


def test_label_matrix_collapses_duplicates():
    m = label_matrix([["dog", "dog", "cow"]], VOCAB)
    assert m.nnz == 2


def test_label_matrix_columns_follow_vocabulary():
    m = label_matrix([["sheep", "bus"], [], ["man"]], VOCAB)
    assert _csr_to_sets(m) == [{0, 4}, set(), {3}]


def test_label_matrix_is_bool_csr():
    m = label_matrix([["dog"]], VOCAB)
    assert sp.isspmatrix_csr(m)
    assert m.dtype == bool


def test_label_matrix_rejects_unknown_label():
    with pytest.raises(ValueError, match="'unicorn'"):
        label_matrix([["dog"], ["unicorn"]], VOCAB)


def test_label_matrix_rejects_repeated_vocabulary():
    with pytest.raises(ValueError, match="repeats labels \\['dog'\\]"):
        label_matrix([["dog"]], ["dog", "cow", "dog"])


def test_label_matrix_accepts_arrays_of_labels():
    m = label_matrix([np.array(["cow", "bus"], dtype=object)], VOCAB)
    assert _csr_to_sets(m) == [{0, 1}]


# ---------------------------------------------------------------- predict_labels


def test_predict_labels_union_of_first_k():
    public = label_matrix([["cow"], ["dog", "cow"], ["sheep"], ["bus"]], VOCAB)
    predicted = predict_labels(np.array([[1, 0, 2], [3, 3, 1]]), public, 2)
    assert _csr_to_sets(predicted) == [{1, 2}, {0}]


def test_predict_labels_empty_neighbours_predict_nothing():
    public = label_matrix([[], ["dog"]], VOCAB)
    predicted = predict_labels(np.array([[0, 1]]), public, 1)
    assert predicted.nnz == 0


def test_predict_labels_top_m_breaks_ties_by_vocabulary():
    public = label_matrix([["sheep", "dog"], ["sheep", "cow"], ["bus"]], VOCAB)
    # Counts: sheep 2; bus, cow, dog 1 each. Bus comes first in the vocabulary.
    predicted = predict_labels(np.array([[0, 1, 2]]), public, 3, top_m=2)
    assert _csr_to_sets(predicted) == [{4, 0}]


def test_predict_labels_top_m_keeps_short_rows():
    public = label_matrix([["dog"], ["dog"]], VOCAB)
    predicted = predict_labels(np.array([[0, 1]]), public, 2, top_m=3)
    assert _csr_to_sets(predicted) == [{2}]


def test_predict_labels_rejects_k_beyond_neighbours():
    public = label_matrix([["dog"]], VOCAB)
    with pytest.raises(ValueError, match="k = 3 exceeds the K = 2"):
        predict_labels(np.zeros((1, 2), dtype=int), public, 3)


@pytest.mark.parametrize("bad", [5, -1])
@pytest.mark.parametrize("dtype", ["<i4", "<i8", ">i4", ">i8"])
def test_predict_labels_rejects_index_outside_public_set(bad, dtype):
    public = label_matrix([["dog"]], VOCAB)
    message = f"index {bad} is outside the public set of 1"
    with pytest.raises(ValueError, match=message):
        predict_labels(np.array([[0, bad]], dtype=dtype), public, 2)


@pytest.mark.parametrize("dtype", ["<i4", ">i4", ">i8", "<u2"])
def test_predict_labels_accepts_any_integer_layout(dtype):
    public = label_matrix([["dog"], ["cow"], ["bus"]], VOCAB)
    predicted = predict_labels(np.array([[2, 1]], dtype=dtype), public, 2)
    assert predicted.toarray().tolist() == [[True, True, False, False, False]]


def test_neighbours_beyond_k_are_not_checked():
    public = label_matrix([["dog"]], VOCAB)
    predicted = predict_labels(np.array([[0, -1]]), public, 1)
    assert predicted.toarray().tolist() == [[False, False, True, False, False]]


def test_predict_labels_rejects_zero_top_m():
    public = label_matrix([["dog"]], VOCAB)
    with pytest.raises(ValueError, match="top_m must be a positive integer"):
        predict_labels(np.zeros((1, 1), dtype=int), public, 1, top_m=0)


@pytest.mark.parametrize("k", [1, 4, 9])
def test_predict_labels_matches_python(k):
    vocabulary, public_sets, _, neighbours = _random_problem(k)
    public = label_matrix([list(s) for s in public_sets], vocabulary)
    predicted = predict_labels(neighbours, public, k)
    assert _csr_to_sets(predicted) == _python_predict(neighbours, public_sets, k)


def test_predict_labels_union_over_many_label_words():
    # 150 labels need three 64-bit words per record.
    vocabulary, public_sets, _, neighbours = _random_problem(11, n_labels=150)
    public = label_matrix([list(s) for s in public_sets], vocabulary)
    predicted = predict_labels(neighbours, public, 5)
    assert _csr_to_sets(predicted) == _python_predict(neighbours, public_sets, 5)


@pytest.mark.parametrize("top_m", [1, 2, 5])
def test_predict_labels_top_m_matches_python(top_m):
    vocabulary, public_sets, _, neighbours = _random_problem(20 + top_m)
    public = label_matrix([list(s) for s in public_sets], vocabulary)
    predicted = predict_labels(neighbours, public, 7, top_m=top_m)
    expected = _python_predict(neighbours, public_sets, 7, top_m=top_m)
    assert _csr_to_sets(predicted) == expected


# ---------------------------------------------------------------- precision_recall


def test_precision_recall_golden():
    truth = label_matrix([["cow", "dog"], ["sheep"], ["bus", "man", "dog"]], VOCAB)
    predicted = label_matrix([["cow", "dog", "man", "bus"], [], ["dog"]], VOCAB)
    precision, recall, correct = precision_recall(truth, predicted)
    assert precision.tolist() == [0.5, 0.0, 1.0]
    assert recall.tolist() == [1.0, 0.0, pytest.approx(1 / 3)]
    assert correct.tolist() == [2, 0, 1]


def test_precision_recall_empty_prediction_has_zero_precision():
    truth = label_matrix([["cow"]], VOCAB)
    precision, _, _ = precision_recall(truth, label_matrix([[]], VOCAB))
    assert precision.tolist() == [0.0]


def test_precision_recall_rejects_record_without_objects():
    truth = label_matrix([["cow"], [], []], VOCAB)
    predicted = label_matrix([["cow"], ["dog"], []], VOCAB)
    with pytest.raises(ValueError, match="2 records have no ground-truth .* row 1"):
        precision_recall(truth, predicted)


def test_precision_recall_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        precision_recall(label_matrix([["cow"]], VOCAB), label_matrix([[], []], VOCAB))


def test_precision_recall_matches_python():
    vocabulary, public_sets, truth_sets, neighbours = _random_problem(30)
    public = label_matrix([list(s) for s in public_sets], vocabulary)
    truth = label_matrix([list(s) for s in truth_sets], vocabulary)
    precision, recall, correct = precision_recall(
        truth, predict_labels(neighbours, public, 6)
    )
    expected = _python_precision_recall(
        truth_sets, _python_predict(neighbours, public_sets, 6)
    )
    np.testing.assert_allclose(precision, expected[0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(recall, expected[1], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(correct, expected[2])


@pytest.mark.parametrize("n_labels", [12, 150])
def test_score_neighbours_matches_precision_recall(n_labels):
    vocabulary, public_sets, truth_sets, neighbours = _random_problem(
        31, n_labels=n_labels
    )
    public = label_matrix([list(s) for s in public_sets], vocabulary)
    truth = label_matrix([list(s) for s in truth_sets], vocabulary)
    fused = score_neighbours(neighbours, public, truth, 6)
    expected = precision_recall(truth, predict_labels(neighbours, public, 6))
    for got, want in zip(fused, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_score_neighbours_rejects_record_without_objects():
    public = label_matrix([["dog"]], VOCAB)
    truth = label_matrix([["dog"], []], VOCAB)
    with pytest.raises(ValueError, match="1 records have no ground-truth"):
        score_neighbours(np.zeros((2, 1), dtype=int), public, truth, 1)


def test_score_neighbours_rejects_truth_shape_mismatch():
    public = label_matrix([["dog"]], VOCAB)
    truth = label_matrix([["dog"]], VOCAB)
    with pytest.raises(ValueError, match="one row per row of neighbours"):
        score_neighbours(np.zeros((2, 1), dtype=int), public, truth, 1)


def test_score_neighbours_rejects_k_beyond_neighbours():
    public = label_matrix([["dog"]], VOCAB)
    truth = label_matrix([["dog"]], VOCAB)
    with pytest.raises(ValueError, match="k = 2 exceeds the K = 1"):
        score_neighbours(np.zeros((1, 1), dtype=int), public, truth, 2)


# ---------------------------------------------------------------- population gaps


def test_population_gap_ties_count_for_neither():
    assert population_gap([0.5, 0.5, 1.0, 0.0], [0.5, 0.5, 0.0, 0.0]) == 0.25


def test_population_gap_all_tied_is_zero():
    assert population_gap([0.3, 0.7], [0.3, 0.7]) == 0.0


def test_population_gap_range_ends():
    assert population_gap([1, 1], [0, 0]) == 1.0
    assert population_gap([0, 0], [1, 1]) == -1.0


def test_population_gap_rejects_length_mismatch():
    with pytest.raises(ValueError, match="differ in length"):
        population_gap([1, 2], [1])


def test_population_gap_rejects_empty():
    with pytest.raises(ValueError, match="empty"):
        population_gap([], [])


def test_population_gap_matches_python():
    rng = np.random.default_rng(40)
    a, b = rng.integers(0, 4, 500) / 4, rng.integers(0, 4, 500) / 4
    assert population_gap(a, b) == pytest.approx(_python_gap(a.tolist(), b.tolist()))


def test_aucg_golden():
    assert aucg([1.0, 0.5, 0.0, 0.5], [0.5, 0.5, 0.5, 0.0]) == pytest.approx(0.125)


def test_aucg_matches_survival_area():
    rng = np.random.default_rng(41)
    a, b = rng.integers(0, 7, 300) / 6, rng.integers(0, 5, 300) / 4
    expected = _python_survival_area(a.tolist()) - _python_survival_area(b.tolist())
    assert aucg(a, b) == pytest.approx(expected, abs=1e-12)


def test_aucg_rejects_recall_above_one():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        aucg([1.5], [0.5])


def test_survival_curve_golden():
    curve = survival_curve([0.0, 0.25, 0.25, 1.0], [0.0, 0.25, 0.5, 1.0])
    assert curve.tolist() == [1.0, 0.75, 0.25, 0.25]


def test_survival_curve_matches_python():
    rng = np.random.default_rng(42)
    recall = rng.integers(0, 5, 200) / 4
    thresholds = np.linspace(0, 1, 17)
    expected = [sum(r >= t for r in recall) / 200 for t in thresholds]
    np.testing.assert_allclose(survival_curve(recall, thresholds), expected)


def test_sign_test_golden():
    # 9 wins, 1 loss, 2 ties: 2 * P(X <= 1), X ~ Binomial(10, 1/2) = 22 / 1024.
    a = [1] * 9 + [0] + [0.5, 0.5]
    b = [0] * 9 + [1] + [0.5, 0.5]
    assert sign_test(a, b) == pytest.approx(22 / 1024)


def test_sign_test_all_tied_is_one():
    assert sign_test([0.2, 0.4], [0.2, 0.4]) == 1.0


# ---------------------------------------------------------------- rankings


def test_rank_records_min_dist_ties_by_id():
    order = rank_records(
        "min_dist", min_dist=[0.2, 0.1, 0.2, 0.0], ids=["d", "c", "a", "b"]
    )
    assert order.tolist() == [3, 1, 2, 0]


def test_rank_records_correct_ties_by_min_dist_then_id():
    order = rank_records(
        "correct",
        min_dist=[0.5, 0.1, 0.5, 0.9],
        ids=["z", "y", "a", "x"],
        correct_target=[1, 1, 1, 3],
    )
    assert order.tolist() == [3, 1, 2, 0]


def test_rank_records_gap_descending():
    order = rank_records(
        "gap",
        min_dist=[0.1, 0.2, 0.3],
        ids=["a", "b", "c"],
        correct_target=[1, 3, 2],
        correct_reference=[2, 0, 2],
    )
    assert order.tolist() == [1, 2, 0]


def test_rank_records_gap_needs_reference():
    with pytest.raises(ValueError, match="needs correct_reference"):
        rank_records("gap", min_dist=[0.1], ids=["a"], correct_target=[1])


def test_rank_records_rejects_unknown_ranking():
    with pytest.raises(ValueError, match="ranking must be one of"):
        rank_records("random", min_dist=[0.1], ids=["a"], correct_target=[1])


@pytest.mark.parametrize("ranking", ["min_dist", "correct", "gap"])
def test_rank_records_matches_python(ranking):
    rng = np.random.default_rng(50)
    n = 500
    min_dist = rng.integers(0, 20, n) / 20  # many ties
    ids = [f"id{v}" for v in rng.permutation(n)]
    correct_t, correct_r = rng.integers(0, 4, n), rng.integers(0, 4, n)
    primary = {
        "min_dist": [0] * n,
        "correct": (-correct_t).tolist(),
        "gap": (correct_r - correct_t).tolist(),
    }[ranking]
    expected = sorted(range(n), key=lambda i: (primary[i], min_dist[i], ids[i]))
    order = rank_records(
        ranking,
        min_dist=min_dist,
        ids=ids,
        correct_target=correct_t,
        correct_reference=correct_r,
    )
    assert order.tolist() == expected


@pytest.mark.parametrize("ranking", ["min_dist", "correct", "gap"])
@pytest.mark.parametrize("size", [1, 7, 50, 333, 500])
def test_head_of_ranking_matches_full_ranking(ranking, size):
    # Many ties in min_dist and in the counts, so the cut falls inside tie groups.
    rng = np.random.default_rng(size)
    n = 500
    min_dist = rng.integers(0, 10, n) / 10
    # Ids repeat too, so some ties fall through to the record position.
    ids = np.array([f"id{v}" for v in rng.integers(0, n // 2, n)])
    correct_t, correct_r = rng.integers(0, 4, n), rng.integers(0, 4, n)
    kwargs = {"correct_target": correct_t, "correct_reference": correct_r}
    full = rank_records(ranking, min_dist=min_dist, ids=ids, **kwargs)
    key = None
    if ranking != "min_dist":
        key = correct_t - (correct_r if ranking == "gap" else 0)
    head = _head_of_ranking(min_dist, ids, key, size)
    assert head.tolist() == full[:size].tolist()


def test_top_l_size_golden():
    assert top_l_size(1000, 0.001) == 1
    assert top_l_size(999, 0.01) == 9
    assert top_l_size(100, 0.29) == 29
    assert top_l_size(5, 0.1) == 1


def test_top_l_size_rejects_zero_fraction():
    with pytest.raises(ValueError, match="fraction"):
        top_l_size(10, 0.0)


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_weights_match_index_resampling():
    rng = np.random.default_rng(60)
    columns = np.column_stack([rng.integers(-1, 2, 400), rng.random(400)]).astype(float)
    weighted = _bootstrap_means(columns, 4000, np.random.default_rng(1))
    draws = np.random.default_rng(2).integers(0, 400, size=(4000, 400))
    indexed = columns[draws].mean(axis=1)
    np.testing.assert_allclose(weighted.mean(axis=0), indexed.mean(axis=0), atol=0.01)
    np.testing.assert_allclose(weighted.std(axis=0), indexed.std(axis=0), rtol=0.06)


def test_bootstrap_spread_matches_standard_error():
    rng = np.random.default_rng(61)
    columns = rng.random((1000, 1))
    replicates = _bootstrap_means(columns, 3000, np.random.default_rng(3))
    standard_error = columns.std() / math.sqrt(1000)
    assert replicates.std() == pytest.approx(standard_error, rel=0.06)


def test_bootstrap_weights_sum_to_records():
    # With a constant column each replicate mean is exactly that constant.
    columns = np.full((50, 1), 0.25)
    replicates = _bootstrap_means(columns, 10, np.random.default_rng(0))
    assert (replicates == 0.25).all()


def test_summarize_interval_contains_value():
    [entry] = summarize(_scores(1, signal=0.2), k=5, n_resamples=300)
    for name in ("ppg", "prg", "aucg"):
        assert entry[name]["ci_low"] <= entry[name]["value"] <= entry[name]["ci_high"]


def test_summarize_same_seed_same_intervals():
    first = summarize(_scores(2), _scores(3), k=5, n_resamples=200, seed=7)
    second = summarize(_scores(2), _scores(3), k=5, n_resamples=200, seed=7)
    assert first == second


def test_summarize_different_seed_different_intervals():
    first = summarize(_scores(2), k=5, n_resamples=200, seed=7)
    second = summarize(_scores(2), k=5, n_resamples=200, seed=8)
    assert first[0]["ppg"] != second[0]["ppg"]


def test_summarize_members_entry_unchanged_by_control():
    alone = summarize(_scores(4), k=5, n_resamples=100)
    with_control = summarize(_scores(4), _scores(5), k=5, n_resamples=100)
    assert with_control[0] == alone[0]


# ---------------------------------------------------------------- summarize


ENTRY_KEYS = [
    "set",
    "k",
    "n",
    "ppg",
    "prg",
    "aucg",
    "ppg_p_value",
    "prg_p_value",
    "mean_precision",
    "mean_recall",
    "top_l",
]
TOP_L_KEYS = [
    "ranking",
    "fraction",
    "l",
    "precision_gap",
    "recall_gap",
    "f_gap",
    "inflated",
    "warning",
]


def test_summarize_entry_keys_follow_schema():
    entries = summarize(_scores(6), _scores(7), k=5, n_resamples=50)
    assert [e["set"] for e in entries] == ["members", "control", "difference"]
    for entry in entries:
        assert list(entry) == ENTRY_KEYS
        for item in entry["top_l"]:
            assert list(item) == TOP_L_KEYS
            assert list(item["f_gap"]) == ["value", "ci_low", "ci_high"]


def test_summarize_is_json_serialisable():
    entries = summarize(_scores(6), _scores(7), k=5, n_resamples=50)
    json.dumps(entries, allow_nan=False)


def test_summarize_population_values():
    scores = _scores(8)
    [entry] = summarize(scores, k=5, n_resamples=50)
    assert entry["ppg"]["value"] == population_gap(
        scores.precision_target, scores.precision_reference
    )
    assert entry["prg_p_value"] == sign_test(
        scores.recall_target, scores.recall_reference
    )
    assert entry["aucg"]["value"] == pytest.approx(
        aucg(scores.recall_target, scores.recall_reference)
    )
    assert entry["mean_recall"]["target"] == pytest.approx(scores.recall_target.mean())


def test_summarize_difference_is_members_minus_control():
    members, control, difference = summarize(
        _scores(9), _scores(10), k=5, n_resamples=50
    )
    expected = members["prg"]["value"] - control["prg"]["value"]
    assert difference["prg"]["value"] == pytest.approx(expected)
    assert difference["ppg_p_value"] is None
    for model in ("target", "reference"):
        gap = members["mean_precision"][model] - control["mean_precision"][model]
        assert difference["mean_precision"][model] == pytest.approx(gap)
    for mine, theirs, diff in zip(
        members["top_l"], control["top_l"], difference["top_l"], strict=True
    ):
        gap = mine["f_gap"]["value"] - theirs["f_gap"]["value"]
        assert diff["f_gap"]["value"] == pytest.approx(gap)


def test_summarize_top_l_golden():
    scores = SetScores(
        ids=["a", "b", "c", "d"],
        min_dist=[0.4, 0.1, 0.3, 0.2],
        precision_target=[1.0, 0.5, 0.0, 1.0],
        recall_target=[1.0, 1.0, 0.0, 0.5],
        correct_target=[2, 1, 0, 1],
        precision_reference=[0.0, 0.5, 0.0, 0.0],
        recall_reference=[0.0, 0.5, 0.0, 0.0],
        correct_reference=[0, 1, 0, 0],
    )
    [entry] = summarize(
        scores, k=1, rankings=["min_dist"], fractions=[0.5], n_resamples=0
    )
    [item] = entry["top_l"]
    # Top 2 by min_dist: b and d. Target P 0.75, R 0.75; reference P 0.25, R 0.25.
    assert item["l"] == 2
    assert item["precision_gap"]["value"] == pytest.approx(0.5)
    assert item["recall_gap"]["value"] == pytest.approx(0.5)
    assert item["f_gap"]["value"] == pytest.approx(0.75 - 0.25)


def test_summarize_f_gap_zero_when_means_zero():
    scores = SetScores(
        ids=["a", "b"],
        min_dist=[0.1, 0.2],
        precision_target=[0.0, 1.0],
        recall_target=[0.0, 1.0],
        correct_target=[0, 1],
        precision_reference=[0.0, 0.0],
        recall_reference=[0.0, 0.0],
        correct_reference=[0, 0],
    )
    [entry] = summarize(
        scores, k=1, rankings=["min_dist"], fractions=[0.5], n_resamples=0
    )
    assert entry["top_l"][0]["f_gap"]["value"] == 0.0


def test_summarize_gap_ranking_is_inflated():
    [entry] = summarize(_scores(11), k=5, fractions=[0.1], n_resamples=0)
    inflated = {item["ranking"]: item["inflated"] for item in entry["top_l"]}
    assert inflated == {"min_dist": False, "correct": False, "gap": True}


def test_summarize_warns_when_l_below_ten():
    [entry] = summarize(_scores(12, n=300), k=5, fractions=[0.01, 0.1], n_resamples=0)
    warnings = {item["l"]: item["warning"] for item in entry["top_l"]}
    assert "below 10" in warnings[3]
    assert warnings[30] is None


def test_summarize_without_resamples_has_no_interval():
    [entry] = summarize(_scores(13), k=5, n_resamples=0)
    assert entry["ppg"]["ci_low"] is None


def test_summarize_top_l_resamples_within_l():
    # Records outside the top L differ wildly; the top-L interval must not see them.
    n = 200
    scores = SetScores(
        ids=[f"r{i}" for i in range(n)],
        min_dist=np.arange(n) / n,
        precision_target=np.r_[
            np.full(20, 0.5), np.random.default_rng(0).random(n - 20)
        ],
        recall_target=np.full(n, 0.5),
        correct_target=np.ones(n, dtype=int),
        precision_reference=np.full(n, 0.25),
        recall_reference=np.full(n, 0.5),
        correct_reference=np.ones(n, dtype=int),
    )
    [entry] = summarize(
        scores, k=1, rankings=["min_dist"], fractions=[0.1], n_resamples=100
    )
    gap = entry["top_l"][0]["precision_gap"]
    assert (gap["value"], gap["ci_low"], gap["ci_high"]) == (0.25, 0.25, 0.25)


def test_summarize_rejects_unknown_ranking():
    with pytest.raises(ValueError, match="ranking must be one of"):
        summarize(_scores(14), k=5, rankings=["best"])


def test_set_scores_rejects_length_mismatch():
    with pytest.raises(ValueError, match="SetScores.ids has shape"):
        SetScores(
            ids=["a"],
            min_dist=[0.1, 0.2],
            precision_target=[0.0, 1.0],
            recall_target=[0.0, 1.0],
            correct_target=[0, 1],
            precision_reference=[0.0, 0.0],
            recall_reference=[0.0, 0.0],
            correct_reference=[0, 0],
        )
