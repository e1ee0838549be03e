"""Scores of the deja vu test: predicted objects, precision, recall and their gaps.

Conventions
-----------
- Object labels of a record set are a boolean CSR matrix of shape
  ``(n_records, n_labels)`` whose columns follow one fixed vocabulary (see
  :func:`label_matrix`). Each row is a set: duplicates collapse to one entry.
- Neighbours are an integer array of shape ``(n_records, K)`` of public-set row
  indices, nearest first; the first ``k <= K`` columns are the k-neighbour list.
- Per-record arrays are 1-D, of length ``n_records``, aligned with the rows above.
- Two models are compared: the *target* (trained on the audited records) and the
  *reference*. Every gap is target minus reference, and for the ``difference``
  record set members minus control.
- Records whose ground truth is empty are excluded by the caller;
  :func:`precision_recall` raises ``ValueError`` when it gets one.
- Intervals are percentile bootstrap intervals over records. Resampling uses count
  weights drawn from ``numpy.random.default_rng(seed)``, never index gathers.

Everything is vectorised over records; nothing here reads or writes files.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import binomtest

RANKINGS = ("min_dist", "correct", "gap")
"""Record rankings for the top-L scores, in the order they are reported."""

_WORD_BITS = 64
# Bytes of gathered label words per block of records (256 KiB), small enough to
# stay in a typical per-core L2 cache (an estimate, not measured per machine).
_GATHER_BLOCK_BYTES = 2**18
# Bits per block when predicted labels are unpacked; small enough for the cache.
_UNPACK_BLOCK_ELEMENTS = 2**23
# Float64 elements per block of bootstrap count weights (64 MB).
_WEIGHT_BLOCK_ELEMENTS = 2**23
_MIN_RELIABLE_L = 10


# --------------------------------------------------------------------------------
# Label matrices and predicted objects
# --------------------------------------------------------------------------------


def label_matrix(label_lists, vocabulary):
    """Build the boolean record-by-label matrix of object label lists.

    Parameters
    ----------
    label_lists : sequence of n_records sequences of str
        The object labels of each record. Repeated labels count once.
    vocabulary : sequence of n_labels str
        Distinct labels; column ``j`` of the result is ``vocabulary[j]``.

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_records, n_labels), bool
        Entry ``(i, j)`` is True when record ``i`` has label ``vocabulary[j]``.
        Column indices are sorted within each row.

    Raises
    ------
    ValueError
        If the vocabulary repeats a label, or a record has a label that is not in
        the vocabulary (the message names it).

    Examples
    --------
    >>> m = label_matrix([["dog", "cow", "dog"], []], ["cow", "dog", "sheep"])
    >>> m.toarray()
    array([[ True,  True, False],
           [False, False, False]])
    """
    vocabulary = pd.Index(list(vocabulary), dtype=object)
    if not vocabulary.is_unique:
        repeated = vocabulary[vocabulary.duplicated()].unique().tolist()
        raise ValueError(f"The vocabulary repeats labels {repeated}; make it unique.")
    n_records = len(label_lists)
    lengths = np.fromiter(map(len, label_lists), dtype=np.int64, count=n_records)
    flat = np.fromiter(
        itertools.chain.from_iterable(label_lists),
        dtype=object,
        count=int(lengths.sum()),
    )
    columns = vocabulary.get_indexer(flat)
    unknown = columns < 0
    if unknown.any():
        names = pd.unique(flat[unknown])
        raise ValueError(
            f"{len(names)} labels are not in the vocabulary of {len(vocabulary)} "
            f"labels, for example {names[:5].tolist()}; add them to the vocabulary "
            "or fix the labels."
        )
    indptr = np.zeros(n_records + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    matrix = sp.csr_matrix(
        (np.ones(len(columns), dtype=np.int32), columns, indptr),
        shape=(n_records, len(vocabulary)),
    )
    return _as_label_csr(matrix, "label_lists")


def predict_labels(neighbours, public_labels, k, *, top_m=None):
    """Predict each record's objects from the labels of its nearest public items.

    Parameters
    ----------
    neighbours : array-like of int, shape (n_records, K)
        Public-set row indices, nearest first, with ``K >= k``.
    public_labels : sparse matrix or array-like, shape (n_public, n_labels)
        Object labels of the public set; nonzero entries are labels present.
    k : int
        Number of nearest neighbours whose labels are used.
    top_m : int or None, default=None
        When set, predict only the `top_m` labels that occur in the most of the `k`
        neighbours. Among labels with equal counts the one earlier in the
        vocabulary (lower column) wins. Rows with fewer than `top_m` distinct
        labels keep all of them.

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_records, n_labels), bool
        Predicted objects: the union of the neighbours' labels, or its `top_m`
        most frequent labels. Column indices are sorted within each row.

    Raises
    ------
    ValueError
        If `k` is not in ``[1, K]``, `top_m` is not a positive integer, or a
        neighbour index is outside the public set.

    See Also
    --------
    precision_recall : Score the prediction against the ground truth.

    Examples
    --------
    >>> public = label_matrix([["cow"], ["cow", "dog"], ["sheep"]],
    ...                       ["cow", "dog", "sheep"])
    >>> neighbours = np.array([[1, 0, 2]])
    >>> predict_labels(neighbours, public, k=2).toarray()
    array([[ True,  True, False]])
    >>> predict_labels(neighbours, public, k=3, top_m=1).toarray()
    array([[ True, False, False]])
    """
    public_labels = _as_label_csr(public_labels, "public_labels")
    n_public, n_labels = public_labels.shape
    neighbours = _check_neighbours(neighbours, k, n_public)
    if top_m is not None:
        if isinstance(top_m, bool) or not isinstance(top_m, int | np.integer):
            raise ValueError(
                f"top_m must be a positive integer or None, got {top_m!r}."
            )
        if top_m < 1:
            raise ValueError(f"top_m must be a positive integer or None, got {top_m}.")
        return _top_m_labels(neighbours[:, :k], public_labels, int(top_m))

    union = _union_bits(neighbours[:, :k], public_labels)
    return _bits_to_csr(union, n_labels)


def score_neighbours(neighbours, public_labels, truth, k):
    """Compute precision, recall and correct objects straight from neighbours.

    Equal to ``precision_recall(truth, predict_labels(neighbours, public_labels,
    k))`` but works on bitmasks and never builds the predicted-label matrix,
    which is most of the cost when the predicted labels are not needed.

    Parameters
    ----------
    neighbours : array-like of int, shape (n_records, K)
        Public-set row indices, nearest first, with ``K >= k``.
    public_labels : sparse matrix or array-like, shape (n_public, n_labels)
        Object labels of the public set.
    truth : sparse matrix or array-like, shape (n_records, n_labels)
        Ground-truth objects; every row must have at least one.
    k : int
        Number of nearest neighbours whose labels are predicted.

    Returns
    -------
    precision, recall : ndarray of shape (n_records,), float64
    correct : ndarray of shape (n_records,), int64
        As returned by :func:`precision_recall`.

    Raises
    ------
    ValueError
        As :func:`predict_labels` and :func:`precision_recall` raise.

    Examples
    --------
    >>> vocabulary = ["cow", "dog", "sheep"]
    >>> public = label_matrix([["cow"], ["dog", "sheep"]], vocabulary)
    >>> truth = label_matrix([["cow", "dog"]], vocabulary)
    >>> precision, recall, correct = score_neighbours([[0, 1]], public, truth, k=2)
    >>> precision.round(3).tolist(), recall.tolist(), correct.tolist()
    ([0.667], [1.0], [2])
    """
    public_labels = _as_label_csr(public_labels, "public_labels")
    truth = _as_label_csr(truth, "truth")
    neighbours = _check_neighbours(neighbours, k, public_labels.shape[0])
    expected_shape = (neighbours.shape[0], public_labels.shape[1])
    if truth.shape != expected_shape:
        raise ValueError(
            f"truth has shape {truth.shape}, expected {expected_shape} (one row per "
            "row of neighbours, one column per label of public_labels)."
        )
    n_true = _check_truth_not_empty(truth)
    union = _union_bits(neighbours[:, :k], public_labels)
    truth_bits = _label_bits(truth)
    correct = np.zeros(truth.shape[0], dtype=np.int64)
    n_predicted = np.zeros(truth.shape[0], dtype=np.int64)
    for word in range(union.shape[1]):
        correct += _popcount(union[:, word] & truth_bits[:, word])
        n_predicted += _popcount(union[:, word])
    return _precision_recall_from_counts(correct, n_predicted, n_true)


def _union_bits(neighbours, public_labels):
    """Bitmask of the union of the public labels of each row of `neighbours`."""
    # The union of label sets is a bitwise OR of their bitmasks: one gather and one
    # OR per neighbour column, with no sparse product. Each public row's words are
    # gathered as one opaque item, and records go in blocks small enough for the
    # cache.
    public_bits = _label_bits(public_labels)  # (n_public, n_words) uint64
    n_records, n_words = neighbours.shape[0], public_bits.shape[1]
    row_type = np.dtype((np.void, public_bits.itemsize * n_words))
    public_rows = public_bits.view(row_type).ravel()
    union = np.empty((n_records, n_words), dtype=np.uint64)
    index_type = np.int32 if public_bits.shape[0] < 2**31 else np.int64
    block = max(1, _GATHER_BLOCK_BYTES // public_bits.itemsize // n_words)
    gathered = np.empty(min(block, n_records), dtype=row_type)
    for start in range(0, n_records, block):
        stop = min(start + block, n_records)
        columns = neighbours[start:stop].T.astype(index_type)  # (k, block)
        acc = union[start:stop]
        np.take(public_rows, columns[0], out=acc.view(row_type).ravel())
        part = gathered[: stop - start]
        part_words = part.view(np.uint64).reshape(stop - start, n_words)
        for column in columns[1:]:
            np.take(public_rows, column, out=part)
            np.bitwise_or(acc, part_words, out=acc)
    return union


def _check_neighbours(neighbours, k, n_public):
    neighbours = np.asarray(neighbours)
    if neighbours.ndim != 2:
        raise ValueError(
            f"neighbours must be a 2-D array (n_records, K), got shape "
            f"{neighbours.shape}."
        )
    if not np.issubdtype(neighbours.dtype, np.integer):
        raise ValueError(f"neighbours must be integers, got dtype {neighbours.dtype}.")
    if not neighbours.dtype.isnative:
        neighbours = neighbours.astype(neighbours.dtype.newbyteorder("="))
    n_columns = neighbours.shape[1]
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if k > n_columns:
        raise ValueError(
            f"k = {k} exceeds the K = {n_columns} neighbours searched per record; "
            f"search with K >= {k}."
        )
    used = neighbours[:, :k]
    # One pass finds both kinds of bad index: as unsigned, negatives are huge.
    unsigned = np.dtype(f"u{used.dtype.itemsize}")
    if used.size and used.view(unsigned).max() >= n_public:
        low = used.min()
        bad = low if low < 0 else used.max()
        raise ValueError(
            f"Neighbour index {bad} is outside the public set of {n_public} "
            "items; the neighbours and public labels do not match."
        )
    return neighbours.astype(np.int64, copy=False)


def _top_m_labels(neighbours, public_labels, top_m):
    n_records, k = neighbours.shape
    n_labels = public_labels.shape[1]
    # counts[i, j] = how many of record i's k neighbours carry label j.
    selector = sp.csr_matrix(
        (
            np.ones(n_records * k, dtype=np.int32),
            neighbours.ravel(),
            np.arange(0, n_records * k + 1, k, dtype=np.int64),
        ),
        shape=(n_records, public_labels.shape[0]),
    )
    counts = (selector @ public_labels.astype(np.int32)).tocsr()
    counts.sum_duplicates()
    rows = np.repeat(np.arange(n_records), np.diff(counts.indptr))
    # Within a row: count descending, then column ascending (vocabulary order).
    order = np.lexsort((counts.indices, -counts.data, rows))
    rank_in_row = np.arange(counts.nnz) - counts.indptr[rows]
    keep = order[rank_in_row < top_m]
    kept_rows = rows[keep]
    indptr = np.zeros(n_records + 1, dtype=np.int64)
    np.cumsum(np.bincount(kept_rows, minlength=n_records), out=indptr[1:])
    result = sp.csr_matrix(
        (np.ones(keep.size, dtype=bool), counts.indices[keep], indptr),
        shape=(n_records, n_labels),
    )
    result.sort_indices()
    return result


def _as_label_csr(matrix, name):
    """Return `matrix` as a canonical boolean CSR matrix (sorted, no duplicates)."""
    if sp.issparse(matrix):
        matrix = matrix.tocsr()
    else:
        array = np.asarray(matrix)
        if array.ndim != 2:
            raise ValueError(
                f"{name} must be a 2-D label matrix, got shape {array.shape}."
            )
        matrix = sp.csr_matrix(array)
    if matrix.dtype == bool and matrix.has_canonical_format and matrix.data.all():
        return matrix
    matrix = matrix.copy()
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    matrix.data = np.ones(matrix.nnz, dtype=bool)
    matrix.indices = matrix.indices.astype(np.int32, copy=False)
    return matrix


def _label_bits(labels):
    """Pack a canonical label CSR matrix into (n_records, n_words) uint64 bitmasks."""
    n_records, n_labels = labels.shape
    n_words = max(1, -(-n_labels // _WORD_BITS))
    rows = np.repeat(np.arange(n_records, dtype=np.int64), np.diff(labels.indptr))
    columns = labels.indices.astype(np.int64)
    positions = rows * n_words + (columns >> 6)
    masks = np.left_shift(np.uint64(1), (columns & 63).astype(np.uint64))
    bits = np.zeros(n_records * n_words, dtype=np.uint64)
    # A canonical row contains each label once, so adding its bits equals OR-ing
    # them. NumPy's add.at has a fast path that its bitwise_or.at lacks (NumPy 2.4).
    np.add.at(bits, positions, masks)
    return bits.reshape(n_records, n_words)


def _bits_to_csr(bits, n_labels):
    """Unpack (n_records, n_words) uint64 bitmasks into a boolean CSR matrix."""
    n_records, n_words = bits.shape
    # Unpack to a power-of-two row width, so the column of a flat position is a
    # bitwise AND rather than an integer division. Padding bits are never set.
    padded_words = 1 << (n_words - 1).bit_length()
    if padded_words == n_words:
        padded = np.ascontiguousarray(bits, dtype="<u8")
    else:
        padded = np.zeros((n_records, padded_words), dtype="<u8")
        padded[:, :n_words] = bits
    as_bytes = padded.view(np.uint8)

    column_mask = padded_words * _WORD_BITS - 1
    indices = []
    block = max(1, _UNPACK_BLOCK_ELEMENTS // (padded_words * _WORD_BITS))
    for start in range(0, n_records, block):
        dense = np.unpackbits(
            as_bytes[start : start + block], axis=1, bitorder="little"
        ).view(bool)
        indices.append((np.flatnonzero(dense) & column_mask).astype(np.int32))

    counts = np.zeros(n_records, dtype=np.int64)
    for word in range(n_words):
        counts += _popcount(bits[:, word])
    indptr = np.zeros(n_records + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    index_array = np.concatenate(indices) if indices else np.zeros(0, np.int32)
    result = sp.csr_matrix(
        (np.ones(index_array.size, dtype=bool), index_array, indptr),
        shape=(n_records, n_labels),
    )
    # Unpacking yields each row's columns in ascending order, once each.
    result.has_canonical_format = True
    return result


def _popcount(words):
    """Number of set bits of each uint64 in a 1-D array."""
    if hasattr(np, "bitwise_count"):  # NumPy >= 2.0
        return np.bitwise_count(words)
    as_bytes = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    return np.unpackbits(as_bytes).reshape(-1, 64).sum(axis=1)


# --------------------------------------------------------------------------------
# Per-record and population metrics
# --------------------------------------------------------------------------------


def precision_recall(truth, predicted):
    """Compute per-record precision, recall and number of correct objects.

    Parameters
    ----------
    truth : sparse matrix or array-like, shape (n_records, n_labels)
        Ground-truth objects; every row must have at least one.
    predicted : sparse matrix or array-like, shape (n_records, n_labels)
        Predicted objects, for example from :func:`predict_labels`.

    Returns
    -------
    precision : ndarray of shape (n_records,), float64
        ``correct / n_predicted``, and 0 where nothing is predicted.
    recall : ndarray of shape (n_records,), float64
        ``correct / n_true``.
    correct : ndarray of shape (n_records,), int64
        Number of distinct ground-truth objects among the predicted ones.

    Raises
    ------
    ValueError
        If the shapes differ or a record has no ground-truth objects (its recall
        is undefined, so the caller must exclude it first).

    Examples
    --------
    >>> vocabulary = ["cow", "dog", "sheep"]
    >>> truth = label_matrix([["cow", "dog"], ["sheep"]], vocabulary)
    >>> predicted = label_matrix([["cow", "sheep", "dog"], []], vocabulary)
    >>> precision, recall, correct = precision_recall(truth, predicted)
    >>> precision.round(3).tolist(), recall.tolist(), correct.tolist()
    ([0.667, 0.0], [1.0, 0.0], [2, 0])
    """
    truth = _as_label_csr(truth, "truth")
    predicted = _as_label_csr(predicted, "predicted")
    if truth.shape != predicted.shape:
        raise ValueError(
            f"truth has shape {truth.shape} but predicted has shape "
            f"{predicted.shape}; both must be (n_records, n_labels)."
        )
    n_true = _check_truth_not_empty(truth)
    n_predicted = np.diff(predicted.indptr)
    both = truth.multiply(predicted).tocsr()
    both.eliminate_zeros()
    correct = np.diff(both.indptr).astype(np.int64)
    return _precision_recall_from_counts(correct, n_predicted, n_true)


def _check_truth_not_empty(truth):
    """Return the number of ground-truth objects per row; raise if any is 0."""
    n_true = np.diff(truth.indptr)
    empty = np.flatnonzero(n_true == 0)
    if empty.size:
        raise ValueError(
            f"{empty.size} records have no ground-truth objects (first at row "
            f"{empty[0]}); exclude them before scoring."
        )
    return n_true


def _precision_recall_from_counts(correct, n_predicted, n_true):
    precision = np.divide(
        correct,
        n_predicted,
        out=np.zeros(len(correct), dtype=np.float64),
        where=n_predicted > 0,
    )
    return precision, correct / n_true, correct


def population_gap(a, b):
    """Compute the population gap: share of records where `a` wins minus where `b` wins.

    With per-record precisions this is PPG, with recalls PRG. Records where the
    two values are equal count for neither side.

    Parameters
    ----------
    a, b : array-like of shape (n_records,)
        Per-record scores of the target and the reference model.

    Returns
    -------
    float
        ``(#{a > b} - #{a < b}) / n_records``, in ``[-1, 1]``.

    Examples
    --------
    >>> population_gap([1.0, 0.5, 0.2, 0.3], [0.5, 0.5, 0.4, 0.0])
    0.25
    """
    a, b = _check_pair(a, b)
    return float(np.sign(a - b).sum() / a.size)


def aucg(recall_a, recall_b):
    """Compute AUCG, the gap in area under the recall survival curves.

    For a model with recalls ``r_1 .. r_n`` in ``[0, 1]`` the survival curve is
    ``S(t) = #{i: r_i >= t} / n``. Its area is exactly the mean recall, because
    ``integral_0^1 1[r_i >= t] dt = r_i`` for each record, so the area is computed
    without thresholds or histogram bins.

    Parameters
    ----------
    recall_a, recall_b : array-like of shape (n_records,)
        Per-record recalls of the target and the reference model, in ``[0, 1]``.

    Returns
    -------
    float
        ``mean(recall_a) - mean(recall_b)``.

    See Also
    --------
    survival_curve : The curve whose area this measures.

    Examples
    --------
    >>> aucg([1.0, 0.5], [0.5, 0.0])
    0.5
    """
    a, b = _check_pair(recall_a, recall_b, unit_interval=True)
    return float(a.mean() - b.mean())


def survival_curve(recall, thresholds):
    """Compute the share of records whose recall is at least each threshold.

    Parameters
    ----------
    recall : array-like of shape (n_records,)
        Per-record recalls.
    thresholds : array-like of shape (n_thresholds,)
        Points ``t`` at which to evaluate ``S(t) = #{i: recall_i >= t} / n``.

    Returns
    -------
    ndarray of shape (n_thresholds,), float64
        ``S(t)`` for each threshold.

    Examples
    --------
    >>> survival_curve([0.0, 0.5, 1.0], [0.0, 0.5, 0.75, 1.0]).tolist()
    [1.0, 0.6666666666666666, 0.3333333333333333, 0.3333333333333333]
    """
    recall = _check_scores(recall, "recall")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim != 1:
        raise ValueError(f"thresholds must be 1-D, got shape {thresholds.shape}.")
    ordered = np.sort(recall)
    below = np.searchsorted(ordered, thresholds, side="left")
    return (recall.size - below) / recall.size


def sign_test(a, b):
    """Test whether `a` exceeds `b` as often as the reverse (two-sided sign test).

    Parameters
    ----------
    a, b : array-like of shape (n_records,)
        Per-record scores of the target and the reference model.

    Returns
    -------
    float
        Two-sided exact binomial p-value of ``#{a > b}`` among the records where
        ``a != b``, with success probability 1/2 (``scipy.stats.binomtest``); 1.0
        when every record is tied.

    Examples
    --------
    >>> round(sign_test([1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0]), 6)
    0.0625
    """
    a, b = _check_pair(a, b)
    return _sign_test_p_value(np.sign(a - b))


def _sign_test_p_value(signs):
    """Two-sided sign-test p-value from per-record signs of ``a - b``."""
    wins = int(np.count_nonzero(signs > 0))
    losses = int(np.count_nonzero(signs < 0))
    if wins + losses == 0:
        return 1.0
    return float(binomtest(wins, wins + losses, 0.5, alternative="two-sided").pvalue)


def _check_scores(x, name, *, unit_interval=False):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {x.shape}.")
    if x.size == 0:
        raise ValueError(f"{name} is empty; at least one record is needed.")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    if unit_interval and ((x < 0).any() or (x > 1).any()):
        raise ValueError(f"{name} must lie in [0, 1].")
    return x


def _check_pair(a, b, *, unit_interval=False):
    a = _check_scores(a, "a", unit_interval=unit_interval)
    b = _check_scores(b, "b", unit_interval=unit_interval)
    if a.shape != b.shape:
        raise ValueError(
            f"The two score arrays differ in length ({a.size} and {b.size})."
        )
    return a, b


# --------------------------------------------------------------------------------
# Rankings and top-L
# --------------------------------------------------------------------------------


def rank_records(
    ranking, *, min_dist, ids, correct_target=None, correct_reference=None
):
    """Order records from most to least suspicious under a ranking.

    Parameters
    ----------
    ranking : {"min_dist", "correct", "gap"}
        ``"min_dist"``: distance from the caption to its nearest public item under
        the target model, ascending. ``"correct"``: correct objects recovered by
        the target, descending. ``"gap"``: ``correct_target - correct_reference``,
        descending.
    min_dist : array-like of shape (n_records,)
        ``1 - cosine similarity`` of each caption to its nearest public item.
    ids : array-like of shape (n_records,)
        Record ids, used to break ties that remain after `min_dist`.
    correct_target, correct_reference : array-like of shape (n_records,), optional
        Correct objects per record; required by the rankings that use them.

    Returns
    -------
    ndarray of shape (n_records,), int64
        Record indices, best first. Ties are broken by `min_dist` ascending, then
        by id ascending.

    Examples
    --------
    >>> rank_records("correct", min_dist=[0.3, 0.1, 0.2], ids=["a", "b", "c"],
    ...              correct_target=[2, 1, 2]).tolist()
    [2, 0, 1]
    """
    min_dist = _check_scores(min_dist, "min_dist")
    ids = np.asarray(ids)
    if ids.shape != min_dist.shape:
        raise ValueError(
            f"ids has shape {ids.shape} but min_dist has shape {min_dist.shape}."
        )
    tiebreak = _order_by_min_dist_then_id(min_dist, ids)
    if ranking == "min_dist":
        return tiebreak.astype(np.int64)
    key = _ranking_key(ranking, correct_target, correct_reference, min_dist.size)
    return _order_by_key(key, tiebreak)


def _ranking_key(ranking, correct_target, correct_reference, n_records):
    """Return the integer to sort descending for `ranking`."""
    if ranking not in RANKINGS:
        raise ValueError(f"ranking must be one of {RANKINGS}, got {ranking!r}.")
    if correct_target is None:
        raise ValueError(f"ranking {ranking!r} needs correct_target.")
    key = np.asarray(correct_target, dtype=np.int64)
    if ranking == "gap":
        if correct_reference is None:
            raise ValueError("ranking 'gap' needs correct_reference.")
        key = key - np.asarray(correct_reference, dtype=np.int64)
    if key.shape != (n_records,):
        raise ValueError(
            f"correct counts have shape {key.shape}, expected ({n_records},)."
        )
    return key


def _order_by_min_dist_then_id(min_dist, ids, rows=None):
    """Indices sorted by `min_dist` ascending, then id, then position.

    When `rows` is given, entry ``i`` of `min_dist` belongs to record ``rows[i]``
    of `ids`, so that only the ids of tied records are ever gathered.
    """
    order = np.argsort(min_dist)
    sorted_dist = min_dist[order]
    starts_group = np.ones(order.size, dtype=bool)
    starts_group[1:] = sorted_dist[1:] != sorted_dist[:-1]
    if starts_group.all():
        return order.astype(np.int64)
    # Only records inside runs of equal min_dist need their ids compared, and
    # those runs are usually short, so the slow sort of string ids stays small.
    group = np.cumsum(starts_group)
    in_tie = ~starts_group
    in_tie[:-1] |= ~starts_group[1:]
    tied = np.flatnonzero(in_tie)
    members = order[tied]
    member_ids = ids[members] if rows is None else ids[rows[members]]
    within = np.lexsort((members, member_ids, group[tied]))
    order[tied] = members[within]
    return order.astype(np.int64)


def _order_by_key(key, tiebreak):
    """Sort by `key` descending, then by position in the `tiebreak` order."""
    ordered_key = key[tiebreak]
    if ordered_key.size == 0:
        return tiebreak
    # A stable sort of the keys taken in tiebreak order keeps that order among
    # equal keys. Counts of correct objects span few values, and NumPy's stable
    # sort of 16-bit integers is a radix sort (numpy.sort documentation).
    ascending = ordered_key.max() - ordered_key
    if ascending.max() < np.iinfo(np.int16).max:
        ascending = ascending.astype(np.int16)
    return tiebreak[np.argsort(ascending, kind="stable")]


def _head_of_ranking(min_dist, ids, key, size):
    """Return the first `size` records of a ranking, sorting only candidates.

    The result equals ``_order_by_key(key, _order_by_min_dist_then_id(min_dist,
    ids))[:size]``, or the tiebreak order alone when `key` is None. A partition
    finds the candidates, which are few when `size` is a small fraction of the
    records, so most records are never sorted.
    """
    n_records = min_dist.size
    if size >= n_records:
        candidates = np.arange(n_records)
    elif key is None:
        cutoff = np.partition(min_dist, size - 1)[size - 1]
        candidates = np.flatnonzero(min_dist <= cutoff)
    else:
        # Every record whose key beats the size-th largest key is in the head.
        # Of those that equal it, only the nearest by min_dist can be.
        # Keys are counts of objects, so a histogram finds that key.
        lowest = key.min()
        at_or_above = np.cumsum(np.bincount(key - lowest)[::-1])[::-1]
        threshold = lowest + np.flatnonzero(at_or_above >= size)[-1]
        above = key > threshold
        boundary = np.flatnonzero(key == threshold)
        needed = size - int(above.sum())
        boundary_dist = min_dist[boundary]
        cutoff = np.partition(boundary_dist, needed - 1)[needed - 1]
        above[boundary[boundary_dist <= cutoff]] = True
        candidates = np.flatnonzero(above)
    order = _order_by_min_dist_then_id(min_dist[candidates], ids, rows=candidates)
    if key is not None:
        order = _order_by_key(key[candidates], order)
    return candidates[order[:size]]


def top_l_size(n, fraction):
    """Compute L, the number of top-ranked records kept for a fraction.

    Parameters
    ----------
    n : int
        Records ranked.
    fraction : float
        The fraction phi, in ``(0, 1]``. It is read as the decimal it prints as,
        so ``0.29`` of 100 records is 29, not ``floor(28.999...)``.

    Returns
    -------
    int
        ``max(1, floor(n * fraction))``.

    Examples
    --------
    >>> top_l_size(5000, 0.001), top_l_size(100, 0.29), top_l_size(20, 0.01)
    (5, 29, 1)
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    return max(1, math.floor(n * Fraction(repr(float(fraction)))))


# --------------------------------------------------------------------------------
# Summary with bootstrap intervals
# --------------------------------------------------------------------------------


@dataclass
class SetScores:
    """Per-record scores of one record set at one k, for both models.

    Every field is an array of shape (n_records,), aligned by record.
    """

    ids: np.ndarray
    """Record ids (str)."""
    min_dist: np.ndarray
    """1 - cosine similarity of the caption to its nearest public item (target)."""
    precision_target: np.ndarray
    recall_target: np.ndarray
    correct_target: np.ndarray
    precision_reference: np.ndarray
    recall_reference: np.ndarray
    correct_reference: np.ndarray

    def __post_init__(self):
        self.ids = np.asarray(self.ids)
        self.min_dist = _check_scores(self.min_dist, "min_dist")
        for name in ("precision", "recall"):
            for model in ("target", "reference"):
                field = f"{name}_{model}"
                setattr(
                    self,
                    field,
                    _check_scores(getattr(self, field), field, unit_interval=True),
                )
        self.correct_target = np.asarray(self.correct_target, dtype=np.int64)
        self.correct_reference = np.asarray(self.correct_reference, dtype=np.int64)
        n_records = self.min_dist.size
        for field in self.__dataclass_fields__:
            shape = getattr(self, field).shape
            if shape != (n_records,):
                raise ValueError(
                    f"SetScores.{field} has shape {shape}, expected ({n_records},)."
                )

    @property
    def n(self):
        """Number of records."""
        return self.min_dist.size


def summarize(
    members,
    control=None,
    *,
    k,
    rankings=RANKINGS,
    fractions=(0.001, 0.01, 0.1),
    n_resamples=1000,
    level=0.95,
    seed=0,
):
    """Compute the results entries of a run for one k, with bootstrap intervals.

    Parameters
    ----------
    members : SetScores
        Scores of the target set (the audited records).
    control : SetScores or None, default=None
        Scores of a control set seen by neither model. When given, entries for
        ``control`` and ``difference`` (members minus control) follow.
    k : int
        Number of nearest neighbours the scores were computed with.
    rankings : sequence of {"min_dist", "correct", "gap"}
        Rankings for the top-L scores.
    fractions : sequence of float in (0, 1]
        Fractions phi; each keeps the top ``L = max(1, floor(n * phi))`` records.
    n_resamples : int, default=1000
        Bootstrap resamples of records. 0 skips the bootstrap and sets every
        ``ci_low`` and ``ci_high`` to None.
    level : float, default=0.95
        Confidence level of the percentile intervals.
    seed : int, default=0
        Seed of ``numpy.random.default_rng``. Members and control draw from two
        independent streams spawned from it, so the members entry is the same
        with or without a control set.

    Returns
    -------
    list of dict
        One entry per record set, in the layout of a ``results`` entry of
        ``summary.json``: ``set``, ``k``, ``n``, ``ppg``, ``prg``, ``aucg``,
        ``ppg_p_value``, ``prg_p_value``, ``mean_precision``, ``mean_recall`` and
        ``top_l``. Intervals are ``{"value", "ci_low", "ci_high"}``.

    Notes
    -----
    Each resample draws count weights ``w`` (multinomial, ``n`` draws over the
    records) and every statistic is a weighted mean ``w @ x / n``. Records with
    identical statistic rows are merged first, and the weights are drawn over the
    distinct rows with probabilities proportional to their multiplicity. That has
    exactly the distribution of resampling records, at a cost that grows with the
    number of distinct rows (small, because precision and recall take few
    values).

    For top-L, the ranking is computed once on all records and the bootstrap
    resamples the L chosen records. The ``gap`` ranking selects records on the
    quantity it measures, so its entries carry ``inflated: True``. In the
    ``difference`` entry, ``l`` is the members' L and the warning considers both
    sets' L.

    Examples
    --------
    >>> scores = SetScores(
    ...     ids=["a", "b", "c", "d"], min_dist=[0.1, 0.2, 0.3, 0.4],
    ...     precision_target=[1.0, 0.5, 0.5, 0.0],
    ...     recall_target=[1.0, 0.5, 1.0, 0.0], correct_target=[2, 1, 1, 0],
    ...     precision_reference=[0.5, 0.5, 0.0, 0.0],
    ...     recall_reference=[0.5, 0.5, 0.0, 0.0], correct_reference=[1, 1, 0, 0])
    >>> [entry] = summarize(scores, k=10, rankings=["min_dist"], fractions=[0.5],
    ...                     n_resamples=200)
    >>> entry["ppg"]["value"], entry["top_l"][0]["l"]
    (0.5, 2)
    """
    rankings = tuple(rankings)
    for ranking in rankings:
        if ranking not in RANKINGS:
            raise ValueError(f"ranking must be one of {RANKINGS}, got {ranking!r}.")
    fractions = tuple(float(fraction) for fraction in fractions)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer):
        raise ValueError(f"n_resamples must be an integer, got {n_resamples!r}.")
    if n_resamples < 0:
        raise ValueError(f"n_resamples must be 0 or more, got {n_resamples}.")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}.")
    if members.n == 0:
        raise ValueError("The members set has no scored records.")

    members_rng, control_rng = np.random.default_rng(seed).spawn(2)
    member_stats = _SetStatistics(
        members, rankings, fractions, int(n_resamples), members_rng
    )
    entries = [member_stats.entry("members", k, level)]
    if control is not None:
        if control.n == 0:
            raise ValueError("The control set has no scored records.")
        control_stats = _SetStatistics(
            control, rankings, fractions, int(n_resamples), control_rng
        )
        entries.append(control_stats.entry("control", k, level))
        entries.append(member_stats.difference_entry(control_stats, k, level))
    return entries


class _Estimate:
    """A statistic on all records plus its bootstrap replicates (or None)."""

    def __init__(self, value, replicates):
        self.value = float(value)
        self.replicates = replicates

    def __sub__(self, other):
        if self.replicates is None:
            return _Estimate(self.value - other.value, None)
        return _Estimate(self.value - other.value, self.replicates - other.replicates)

    def interval(self, level):
        if self.replicates is None:
            return {"value": self.value, "ci_low": None, "ci_high": None}
        alpha = 1 - level
        low, high = np.quantile(self.replicates, [alpha / 2, 1 - alpha / 2])
        return {"value": self.value, "ci_low": float(low), "ci_high": float(high)}


class _SetStatistics:
    """Point estimates and bootstrap replicates of every figure for one record set."""

    def __init__(self, scores, rankings, fractions, n_resamples, rng):
        self.n = scores.n
        # Population figures are means of these per-record columns.
        precision_sign = np.sign(scores.precision_target - scores.precision_reference)
        recall_gap = scores.recall_target - scores.recall_reference
        recall_sign = np.sign(recall_gap)
        self.ppg_p_value = _sign_test_p_value(precision_sign)
        self.prg_p_value = _sign_test_p_value(recall_sign)
        self.mean_precision = {
            "target": float(scores.precision_target.mean()),
            "reference": float(scores.precision_reference.mean()),
        }
        self.mean_recall = {
            "target": float(scores.recall_target.mean()),
            "reference": float(scores.recall_reference.mean()),
        }

        columns = (precision_sign, recall_sign, recall_gap)
        values = [column.mean() for column in columns]
        replicates = None
        if n_resamples:
            replicates = _bootstrap_means(np.column_stack(columns), n_resamples, rng)
        self.population = {
            name: _Estimate(values[j], None if replicates is None else replicates[:, j])
            for j, name in enumerate(("ppg", "prg", "aucg"))
        }

        self.top_l = []
        # Only the longest top-L list of each ranking is ever read.
        head_size = max((top_l_size(self.n, f) for f in fractions), default=0)
        for ranking in rankings:
            key = None
            if ranking != "min_dist":
                key = _ranking_key(
                    ranking, scores.correct_target, scores.correct_reference, self.n
                )
            order = _head_of_ranking(scores.min_dist, scores.ids, key, head_size)
            for fraction in fractions:
                l_size = top_l_size(self.n, fraction)
                chosen = order[:l_size]
                columns = np.column_stack(
                    [
                        scores.precision_target[chosen],
                        scores.recall_target[chosen],
                        scores.precision_reference[chosen],
                        scores.recall_reference[chosen],
                    ]
                )
                means = columns.mean(axis=0, keepdims=True)
                replicates = _bootstrap_means(columns, n_resamples, rng)
                self.top_l.append(
                    {
                        "ranking": ranking,
                        "fraction": fraction,
                        "l": l_size,
                        "gaps": _top_l_gaps(means, replicates),
                    }
                )

    def entry(self, set_name, k, level):
        top_l = []
        for item in self.top_l:
            top_l.append(_top_l_entry(item, item["l"], _l_warning(item["l"]), level))
        return {
            "set": set_name,
            "k": int(k),
            "n": int(self.n),
            **{name: est.interval(level) for name, est in self.population.items()},
            "ppg_p_value": self.ppg_p_value,
            "prg_p_value": self.prg_p_value,
            "mean_precision": dict(self.mean_precision),
            "mean_recall": dict(self.mean_recall),
            "top_l": top_l,
        }

    def difference_entry(self, control, k, level):
        population = {
            name: (est - control.population[name]).interval(level)
            for name, est in self.population.items()
        }
        top_l = []
        for mine, theirs in zip(self.top_l, control.top_l, strict=True):
            gaps = {
                name: mine["gaps"][name] - theirs["gaps"][name] for name in mine["gaps"]
            }
            warning = None
            if min(mine["l"], theirs["l"]) < _MIN_RELIABLE_L:
                warning = (
                    f"L is below {_MIN_RELIABLE_L} (members {mine['l']}, control "
                    f"{theirs['l']}); the interval is unreliable."
                )
            top_l.append(
                _top_l_entry({**mine, "gaps": gaps}, mine["l"], warning, level)
            )

        models = ("target", "reference")
        mean_precision = {
            m: self.mean_precision[m] - control.mean_precision[m] for m in models
        }
        mean_recall = {m: self.mean_recall[m] - control.mean_recall[m] for m in models}
        return {
            "set": "difference",
            "k": int(k),
            "n": int(self.n),
            **population,
            "ppg_p_value": None,
            "prg_p_value": None,
            "mean_precision": mean_precision,
            "mean_recall": mean_recall,
            "top_l": top_l,
        }


def _l_warning(l_size):
    if l_size >= _MIN_RELIABLE_L:
        return None
    return f"L = {l_size} is below {_MIN_RELIABLE_L}; the interval is unreliable."


def _top_l_entry(item, l_size, warning, level):
    return {
        "ranking": item["ranking"],
        "fraction": item["fraction"],
        "l": int(l_size),
        **{name: est.interval(level) for name, est in item["gaps"].items()},
        "inflated": item["ranking"] == "gap",
        "warning": warning,
    }


def _f_score(precision, recall):
    """F-score of mean precision and mean recall, 0 where both are 0."""
    total = precision + recall
    return np.divide(
        2 * precision * recall,
        total,
        out=np.zeros_like(total, dtype=np.float64),
        where=total > 0,
    )


def _top_l_gaps(means, replicates):
    """Precision, recall and F gaps from (1, 4) means and (B, 4) replicates.

    Columns are precision_target, recall_target, precision_reference,
    recall_reference.
    """

    def gaps(m):
        f_target = _f_score(m[:, 0], m[:, 1])
        f_reference = _f_score(m[:, 2], m[:, 3])
        return m[:, 0] - m[:, 2], m[:, 1] - m[:, 3], f_target - f_reference

    values = gaps(means)
    resampled = (None, None, None) if replicates is None else gaps(replicates)
    names = ("precision_gap", "recall_gap", "f_gap")
    return {name: _Estimate(values[j][0], resampled[j]) for j, name in enumerate(names)}


def _bootstrap_means(columns, n_resamples, rng):
    """Column means of `n_resamples` bootstrap resamples of the rows of `columns`.

    Parameters
    ----------
    columns : ndarray of shape (n_records, n_columns), float64
        One row of per-record statistics per record.
    n_resamples : int
        Number of resamples; 0 returns None.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of shape (n_resamples, n_columns), float64, or None
    """
    if n_resamples == 0:
        return None
    n_records = columns.shape[0]
    distinct, multiplicity = _distinct_rows(columns)
    probabilities = multiplicity / n_records
    block = max(1, min(n_resamples, _WEIGHT_BLOCK_ELEMENTS // len(distinct)))
    means = np.empty((n_resamples, columns.shape[1]), dtype=np.float64)
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        # weights[b, u]: how often resample b draws a record with distinct row u.
        weights = rng.multinomial(n_records, probabilities, size=stop - start)
        means[start:stop] = (weights.astype(np.float64) @ distinct) / n_records
    return means


def _distinct_rows(columns):
    """Distinct rows of a 2-D float array and how often each occurs."""
    codes = np.zeros(columns.shape[0], dtype=np.int64)
    n_codes = 1
    # Combine per-column codes one column at a time, re-coding after each step so
    # the combined code stays below n_records and cannot overflow.
    for j in range(columns.shape[1]):
        _, column_codes = np.unique(columns[:, j], return_inverse=True)
        combined = codes * (column_codes.max() + 1) + column_codes
        _, first, codes = np.unique(combined, return_index=True, return_inverse=True)
        n_codes = first.size
    multiplicity = np.bincount(codes, minlength=n_codes)
    return columns[first], multiplicity
