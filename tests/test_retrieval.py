import faiss
import numpy as np
import pytest

from dejavu.errors import InputError
from dejavu.retrieval import l2_normalize, search


def _random_unit(rng, n, dim):
    return l2_normalize(rng.standard_normal((n, dim)))


def _brute_force(queries, index, k):
    """Top k by float64 inner product, ties to the lower index (stable sort)."""
    scores = queries.astype(np.float64) @ index.astype(np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def test_l2_normalize_gives_unit_rows():
    x = np.random.default_rng(0).standard_normal((5, 7)) * 3
    norms = np.linalg.norm(l2_normalize(x), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-6)


def test_l2_normalize_rejects_zero_row():
    with pytest.raises(InputError, match="Row 1 of x has zero norm"):
        l2_normalize([[1.0, 0.0], [0.0, 0.0]])


def test_search_matches_brute_force():
    rng = np.random.default_rng(0)
    queries, index = _random_unit(rng, 300, 32), _random_unit(rng, 2000, 32)
    expected_sims, expected_nbrs = _brute_force(queries, index, 10)
    sims, nbrs = search(queries, index, 10)
    np.testing.assert_array_equal(nbrs, expected_nbrs)
    np.testing.assert_allclose(sims, expected_sims, atol=1e-6)


def test_search_output_dtypes_and_shapes():
    rng = np.random.default_rng(1)
    sims, nbrs = search(_random_unit(rng, 4, 8), _random_unit(rng, 20, 8), 3)
    assert sims.dtype == np.float32
    assert nbrs.dtype == np.int64
    assert sims.shape == (4, 3)
    assert nbrs.shape == (4, 3)


def test_search_batches_give_same_result():
    rng = np.random.default_rng(2)
    queries, index = _random_unit(rng, 101, 16), _random_unit(rng, 500, 16)
    _, whole = search(queries, index, 7)
    _, batched = search(queries, index, 7, batch_size=10)
    np.testing.assert_array_equal(batched, whole)


def test_search_ties_go_to_lower_index():
    rng = np.random.default_rng(3)
    index = _random_unit(rng, 200, 16)
    # Copies of row 150 at scattered positions, all exactly tied for any query.
    copies = [3, 40, 77, 150, 199]
    index[copies] = index[150]
    queries = np.vstack([index[[150]], _random_unit(rng, 20, 16)])
    expected_sims, expected_nbrs = _brute_force(queries, index, 8)
    sims, nbrs = search(queries, index, 8)
    np.testing.assert_array_equal(nbrs[0, :5], copies)
    np.testing.assert_array_equal(nbrs, expected_nbrs)


def test_search_tie_group_larger_than_candidates():
    # 60 identical public vectors: the first candidate list (k + 4) cannot hold
    # the whole tie group.
    rng = np.random.default_rng(4)
    index = _random_unit(rng, 300, 8)
    tied = np.sort(rng.choice(300, size=60, replace=False))
    index[tied] = index[tied[-1]]
    sims, nbrs = search(index[[tied[-1]]], index, 20)
    np.testing.assert_array_equal(nbrs[0], tied[:20])


def test_search_exact_ties_that_faiss_rounds_apart():
    # Permutations of one vector have the same inner product with a constant
    # query. Their components lie within a factor of two, so the float64 sums are
    # exact ties. FAISS's float32 sums round them apart by an ulp, and its top 24
    # (the first candidate list) miss some of the 20 lowest ids.
    rng = np.random.default_rng(4)
    dim = 16
    base = rng.uniform(0.5, 1.0, dim).astype(np.float32)
    base /= np.float32(np.linalg.norm(base))
    index = _random_unit(rng, 300, dim)
    tied = np.sort(rng.choice(300, size=60, replace=False))
    for row in tied:
        index[row] = rng.permutation(base)
    query = np.full((1, dim), 1 / np.sqrt(dim), dtype=np.float32)
    flat = faiss.IndexFlatIP(dim)
    flat.add(index)
    faiss_scores, faiss_ids = flat.search(query, 24)
    assert np.unique(faiss_scores[0]).size > 1  # precondition: FAISS rounds apart
    assert not np.isin(tied[:20], faiss_ids[0]).all()  # precondition
    _, nbrs = search(query, index, 20)
    np.testing.assert_array_equal(nbrs[0], tied[:20])


def test_search_duplicates_give_equal_similarities():
    rng = np.random.default_rng(5)
    index = _random_unit(rng, 100, 24)
    index[[10, 60]] = index[30]
    sims, nbrs = search(_random_unit(rng, 50, 24), index, 100)
    position = np.argsort(nbrs, axis=1)  # position of each public id per query
    rows = np.arange(50)
    assert (sims[rows, position[:, 10]] == sims[rows, position[:, 60]]).all()


def test_search_k_equal_public_size_returns_all():
    rng = np.random.default_rng(6)
    index = _random_unit(rng, 12, 4)
    _, nbrs = search(_random_unit(rng, 3, 4), index, 12)
    np.testing.assert_array_equal(np.sort(nbrs, axis=1), np.tile(np.arange(12), (3, 1)))


def test_search_rejects_k_above_public_size():
    rng = np.random.default_rng(7)
    with pytest.raises(InputError, match=r"k = 11 .* public set \(10 items\)"):
        search(_random_unit(rng, 2, 4), _random_unit(rng, 10, 4), 11)


def test_search_rejects_k_zero():
    rng = np.random.default_rng(8)
    with pytest.raises(InputError, match="k must be a positive integer"):
        search(_random_unit(rng, 2, 4), _random_unit(rng, 10, 4), 0)


def test_search_rejects_unnormalised_queries():
    rng = np.random.default_rng(9)
    queries = _random_unit(rng, 3, 4) * 2
    with pytest.raises(InputError, match="Row 0 of queries has L2 norm 2"):
        search(queries, _random_unit(rng, 10, 4), 1)


def test_search_rejects_dimension_mismatch():
    rng = np.random.default_rng(10)
    with pytest.raises(InputError, match="dimension 4 .* has 5"):
        search(_random_unit(rng, 3, 4), _random_unit(rng, 10, 5), 1)


def test_search_rejects_integer_vectors():
    with pytest.raises(InputError, match="floating point"):
        search(np.eye(2, dtype=np.int64), np.eye(2, dtype=np.float32), 1)


def test_search_rejects_nan():
    index = np.eye(2, dtype=np.float32)
    with pytest.raises(InputError, match="NaN"):
        search(np.array([[np.nan, 1.0]], dtype=np.float32), index, 1)


@pytest.mark.skipif(faiss.get_num_gpus() > 0, reason="a GPU is present")
def test_search_gpu_request_without_gpu_raises():
    index = np.eye(2, dtype=np.float32)
    with pytest.raises(InputError, match="FAISS sees no GPU"):
        search(index, index, 1, device="gpu")


def test_search_rejects_unknown_device():
    index = np.eye(2, dtype=np.float32)
    with pytest.raises(InputError, match="device must be"):
        search(index, index, 1, device="tpu")
