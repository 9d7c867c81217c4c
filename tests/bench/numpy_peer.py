"""The NumPy peer of retrieval_bench: exact f32 dense retrieval (matrix x query vector, top k).

    numpy_peer.py PREFIX DIMS K

Reads PREFIX.vectors (n x DIMS little-endian f32, unit rows) and PREFIX.queries (q x DIMS), times each
query (scores = M @ q, argpartition, then sort the k best), and prints one JSON object: per-query
milliseconds, each query's top k row numbers, and the NumPy version and BLAS thread setting. The
benchmark starts it with one BLAS thread, so it is one core against one core.
"""

import json
import os
import sys
import time

import numpy as np


def main() -> None:
    prefix, dims, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    matrix = np.fromfile(prefix + ".vectors", dtype="<f4").reshape(-1, dims)
    queries = np.fromfile(prefix + ".queries", dtype="<f4").reshape(-1, dims)
    k = min(k, matrix.shape[0])
    # Warm-up: page the matrix in and let BLAS pick its kernels.
    for q in queries[:3]:
        matrix @ q
    times, tops = [], []
    for q in queries:
        started = time.perf_counter()
        scores = matrix @ q
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        times.append((time.perf_counter() - started) * 1e3)
        tops.append(best.tolist())
    print(
        json.dumps(
            {
                "times_ms": times,
                "top": tops,
                "numpy": np.__version__,
                "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
            }
        )
    )


if __name__ == "__main__":
    main()
