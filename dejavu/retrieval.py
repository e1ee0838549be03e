"""Exact nearest-neighbour search of public-set embeddings with FAISS.

Conventions
-----------
- Vectors are rows of a 2-D float array, shape ``(n_vectors, dim)``, L2-normalised,
  so the inner product is the cosine similarity. :func:`l2_normalize` makes them so.
- The public set is the *index*; captions (or public captions in t2t mode) are the
  *queries*. Neighbours are row indices into the index, nearest first.
- Search is exact (``faiss.IndexFlatIP``). FAISS only proposes candidates, whose
  similarities are recomputed in float64 with a fixed summation order. Ties go to
  the lower public index. The neighbours therefore do not depend on how FAISS rounds
  its float32 scores, which varies with the build, the threads and the device.
- The search runs on every GPU that FAISS sees (``faiss.get_num_gpus() > 0``, the
  index sharded across them) and on the CPU otherwise.
"""

from __future__ import annotations

import logging

import faiss
import numpy as np
from tqdm.auto import tqdm

from dejavu.errors import InputError

logger = logging.getLogger(__name__)

# Norms further than this from 1 mean the caller forgot to normalise.
_NORM_TOLERANCE = 1e-3
# FAISS's GPU k-selection handles k up to GPU_MAX_SELECTION_K, which is 2048 or,
# in some builds, 1024; larger candidate lists are searched on the CPU index.
_GPU_MAX_K = 1024
# Float64 elements per chunk of the exact re-scoring (8 MB).
_RESCORE_ELEMENTS = 2**20


def l2_normalize(x):
    """Scale each row of `x` to unit L2 norm.

    Parameters
    ----------
    x : array-like of shape (n_vectors, dim)
        Embeddings, any floating dtype.

    Returns
    -------
    ndarray of shape (n_vectors, dim), float32
        The rows divided by their L2 norms (computed in float64).

    Raises
    ------
    InputError
        If `x` is not 2-D, not floating point, contains NaN or infinity, or has a
        row of zero norm.

    Examples
    --------
    >>> l2_normalize([[3.0, 4.0]]).astype(float).round(6).tolist()
    [[0.6, 0.8]]
    """
    x = _as_float_matrix(x, "x")
    norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if zero.size:
        raise InputError(
            f"Row {zero[0]} of x has zero norm and cannot be normalised "
            f"({zero.size} such rows); remove empty embeddings first."
        )
    return (x / norms).astype(np.float32)


def search(queries, index, k, *, batch_size=65536, device="auto", progress=False):
    """Find the `k` public vectors with the largest inner product for each query.

    Parameters
    ----------
    queries : array-like of shape (n_queries, dim)
        L2-normalised query vectors (caption embeddings), floating point.
    index : array-like of shape (n_public, dim)
        L2-normalised public-set vectors, floating point.
    k : int
        Neighbours per query, ``1 <= k <= n_public``.
    batch_size : int, default=65536
        Queries searched at once; memory grows linearly with it.
    device : {"auto", "cpu", "gpu"}, default="auto"
        ``"auto"`` uses every GPU that ``faiss.get_num_gpus()`` counts, else the CPU.
    progress : bool, default=False
        Show a progress bar over query batches.

    Returns
    -------
    similarities : ndarray of shape (n_queries, k), float32
        Cosine similarities, non-increasing along each row.
    neighbours : ndarray of shape (n_queries, k), int64
        Row indices into `index`, nearest first. Equal similarities are ordered by
        the lower index.

    Raises
    ------
    InputError
        If the arrays are not 2-D floating point with unit-norm rows and equal
        widths, if `k` is not in ``[1, n_public]``, or if ``device="gpu"`` and FAISS
        sees no GPU.

    Notes
    -----
    FAISS scores in float32, whose rounding can reorder near-ties. Each query
    therefore asks FAISS for a few more candidates than `k`, recomputes their
    similarities in float64 (products of float32 values are exact in float64, and
    the sum runs over dimensions in a fixed order), and sorts by (similarity
    descending, index ascending). A query whose last candidate could still tie
    with its k-th neighbour after FAISS's rounding error is searched again with
    twice as many candidates, so the result is the exact top k.

    Examples
    --------
    >>> public = l2_normalize([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    >>> similarities, neighbours = search(l2_normalize([[1.0, 0.1]]), public, k=2)
    >>> neighbours
    array([[0, 2]])
    """
    queries = _as_unit_vectors(queries, "queries")
    index = _as_unit_vectors(index, "index")
    if queries.shape[1] != index.shape[1]:
        raise InputError(
            f"Queries have dimension {queries.shape[1]} but the public-set index has "
            f"{index.shape[1]}; embed both with the same model."
        )
    n_public = index.shape[0]
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}.")
    if k > n_public:
        raise InputError(
            f"k = {k} is larger than the public set ({n_public} items); "
            f"use k <= {n_public} or a larger public set."
        )
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}.")
    k = int(k)

    searcher = _Searcher(index, device)
    n_queries = queries.shape[0]
    similarities = np.empty((n_queries, k), dtype=np.float32)
    neighbours = np.empty((n_queries, k), dtype=np.int64)
    starts = range(0, n_queries, batch_size)
    for start in tqdm(starts, desc="search", unit="batch", disable=not progress):
        stop = min(start + batch_size, n_queries)
        sims, nbrs = searcher.top_k(queries[start:stop], k)
        similarities[start:stop] = sims
        neighbours[start:stop] = nbrs
    return similarities, neighbours


def _as_float_matrix(x, name):
    x = np.asarray(x)
    if x.ndim != 2:
        raise InputError(f"{name} must be a 2-D array, got shape {x.shape}.")
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"{name} must be floating point, got dtype {x.dtype}.")
    if not np.isfinite(x).all():
        raise InputError(f"{name} contains NaN or infinite values.")
    return np.ascontiguousarray(x, dtype=np.float32)


def _as_unit_vectors(x, name):
    x = _as_float_matrix(x, name)
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > _NORM_TOLERANCE)
    if bad.size:
        raise InputError(
            f"Row {bad[0]} of {name} has L2 norm {norms[bad[0]]:.6g}, not 1 "
            f"({bad.size} such rows); pass the vectors through l2_normalize first."
        )
    return x


class _Searcher:
    """A FAISS flat inner-product index plus the exact re-scoring of candidates."""

    def __init__(self, vectors, device):
        if device not in ("auto", "cpu", "gpu"):
            raise InputError(f"device must be 'auto', 'cpu' or 'gpu', got {device!r}.")
        self.vectors = vectors  # (n_public, dim) float32
        self.cpu_index = faiss.IndexFlatIP(vectors.shape[1])
        self.cpu_index.add(vectors)
        n_gpus = faiss.get_num_gpus()
        if device == "gpu" and n_gpus == 0:
            raise InputError(
                "device='gpu' was requested but FAISS sees no GPU; install faiss-gpu "
                "or use device='cpu'."
            )
        self.gpu_index = None
        if device != "cpu" and n_gpus > 0:
            # NOTE: untested here (the build machines have faiss-cpu only). Sharding
            # splits the public set across GPUs; results are merged by FAISS.
            options = faiss.GpuMultipleClonerOptions()
            options.shard = True
            self.gpu_index = faiss.index_cpu_to_all_gpus(self.cpu_index, co=options)
            logger.info("Searching on %d GPUs", n_gpus)
        # Worst-case float32 error of a FAISS inner product of two unit vectors is
        # about dim * 2**-24; four times the float32 epsilon per term leaves room
        # for norms up to 1 + _NORM_TOLERANCE and for GPU summation orders.
        self.score_tolerance = 4 * vectors.shape[1] * np.finfo(np.float32).eps

    def _faiss_search(self, queries, n_candidates):
        if self.gpu_index is not None and n_candidates <= _GPU_MAX_K:
            return self.gpu_index.search(queries, n_candidates)
        return self.cpu_index.search(queries, n_candidates)

    def top_k(self, queries, k):
        """Return exact (similarities, neighbours) of shape (n, k) for `queries`."""
        n_public = self.vectors.shape[0]
        similarities = np.empty((len(queries), k), dtype=np.float32)
        neighbours = np.empty((len(queries), k), dtype=np.int64)
        pending = np.arange(len(queries))
        # A few candidates beyond k; queries whose near-ties reach past them are
        # searched again with twice as many.
        n_candidates = min(n_public, k + max(4, k // 8))
        while pending.size:
            faiss_scores, candidates = self._faiss_search(
                queries[pending], n_candidates
            )
            exact = self._rescore_candidates(
                queries[pending], faiss_scores, candidates, k
            )
            # Sort each row by similarity descending, then index ascending.
            order = np.lexsort((candidates, -exact))
            exact = np.take_along_axis(exact, order, axis=1)
            candidates = np.take_along_axis(candidates, order, axis=1)

            # A public item outside the candidates scores at most the last FAISS
            # score plus FAISS's rounding error. When that bound is below the exact
            # k-th similarity, no item outside can enter or tie the top k.
            if n_candidates == n_public:
                done = np.ones(pending.size, dtype=bool)
            else:
                bound = faiss_scores[:, -1].astype(np.float64) + self.score_tolerance
                done = bound < exact[:, k - 1]
            rows = pending[done]
            similarities[rows] = exact[done, :k]
            neighbours[rows] = candidates[done, :k]
            pending = pending[~done]
            if pending.size:
                n_candidates = min(n_public, 2 * n_candidates)
                logger.debug(
                    "%d queries have near-ties at k=%d; searching %d candidates",
                    pending.size,
                    k,
                    n_candidates,
                )
        return similarities, neighbours

    def _rescore_candidates(self, queries, faiss_scores, candidates, k):
        """Exact similarities of the candidates that can reach the top k.

        A candidate after FAISS's k-th can only enter the top k when its FAISS
        score is within twice the rounding error of the k-th one. Other
        candidates get -inf, which sorts them after every rescored one.
        """
        exact = np.full(candidates.shape, -np.inf)  # (n, n_candidates) float64
        exact[:, :k] = self._rescore(queries, candidates[:, :k])
        if candidates.shape[1] > k:
            threshold = faiss_scores[:, k - 1] - 2 * self.score_tolerance
            near = faiss_scores[:, k] >= threshold
            if near.any():
                exact[near, k:] = self._rescore(queries[near], candidates[near, k:])
        return exact

    def _rescore(self, queries, candidates):
        """Float64 inner products of each query with its candidate vectors."""
        n, n_candidates = candidates.shape
        dim = queries.shape[1]
        scores = np.empty((n, n_candidates), dtype=np.float64)
        chunk = max(1, _RESCORE_ELEMENTS // (n_candidates * dim))
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            rows = stop - start
            # (dim, rows, n_candidates): one contiguous slab per dimension.
            slab = np.empty((dim, rows, n_candidates), dtype=np.float64)
            slab[...] = self.vectors[candidates[start:stop]].transpose(2, 0, 1)
            query_columns = np.empty((dim, rows, 1), dtype=np.float64)
            query_columns[:, :, 0] = queries[start:stop].T
            # Element-wise accumulation over dimensions in a fixed order, so equal
            # vectors always get bit-identical scores (a BLAS or SIMD reduction
            # may sum in an order that depends on memory alignment).
            total = np.zeros((rows, n_candidates), dtype=np.float64)
            product = np.empty_like(total)
            for d in range(dim):
                np.multiply(query_columns[d], slab[d], out=product)
                total += product
            scores[start:stop] = total
        return scores


__all__ = ["l2_normalize", "search"]
