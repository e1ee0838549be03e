"""Time dejavu.retrieval.search against a bare faiss.IndexFlatIP search.

Both search the same L2-normalised random float32 vectors (default 20,000 queries,
20,000 public vectors, 128 dimensions, k=10). The FAISS timing includes building
the index, as ``search`` does. ``search`` additionally re-scores the candidates
in float64 and orders ties by the lower public index. Each timing is the minimum
over ``--repeats`` runs, alternating the two. ``--threads 1`` gives steadier times
on a machine that other jobs share.

Usage::

    python benchmarks/bench_search.py
    python benchmarks/bench_search.py --queries 5000 --public 100000 --dim 512
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from dejavu.retrieval import l2_normalize, search


def faiss_direct(queries, public, k):
    index = faiss.IndexFlatIP(public.shape[1])
    index.add(public)
    return index.search(queries, k)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--public", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=0, help="FAISS OpenMP threads (0: default)"
    )
    args = parser.parse_args()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)

    rng = np.random.default_rng(args.seed)
    queries = l2_normalize(rng.standard_normal((args.queries, args.dim)))
    public = l2_normalize(rng.standard_normal((args.public, args.dim)))
    print(
        f"queries {args.queries:,}, public {args.public:,}, dim {args.dim}, "
        f"k {args.k}, FAISS threads {faiss.omp_get_max_threads()}"
    )

    ours, theirs = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        _, faiss_neighbours = faiss_direct(queries, public, args.k)
        theirs.append(time.perf_counter() - start)
        start = time.perf_counter()
        _, neighbours = search(queries, public, args.k)
        ours.append(time.perf_counter() - start)

    agreement = (neighbours == faiss_neighbours).mean()
    print(f"faiss.IndexFlatIP: {min(theirs):.3f} s (runs: {_format(theirs)})")
    print(f"dejavu search:     {min(ours):.3f} s (runs: {_format(ours)})")
    print(f"ratio (dejavu / faiss, minimum times): {min(ours) / min(theirs):.2f}")
    print(f"neighbours equal to FAISS's: {agreement:.4%}")


def _format(seconds):
    return ", ".join(f"{s:.3f}" for s in seconds)


if __name__ == "__main__":
    main()
