#!/usr/bin/env python3
"""numpy (OpenBLAS) sgemm reference for bench/gemm.sh.

usage: gemm.py REPS [MxKxN ...]   (default: the four shapes of docs/kernels.md)

Prints one line per shape and variant: "M K N VARIANT GFLOP/s CPU-GFLOP/s", medians of REPS
timed repetitions after one warm-up, over wall time and over the calling thread's CPU time
(meaningful with one thread, where OpenBLAS computes on the calling thread; on a busy
machine it leaves out the time given to other processes), and exits non-zero if a sampled element of the result is
wrong (some OpenBLAS kernels misbehave on CPUs newer than the library). Variants match herd's BenchmarkMatMul: NN = a@b,
TN = a.T@b, NT = a@b.T, TT = a.T@b.T, the transposes being numpy views (no copy), so
OpenBLAS sees the same strided operands herd does.

Run with OPENBLAS_NUM_THREADS set to the thread count to compare (gemm.sh does this).
"""
import statistics
import sys
import time

import numpy as np

SHAPES = [(1024, 1024, 1024), (2048, 2048, 2048), (4096, 768, 3072), (2048, 256, 768)]
VARIANTS = ["NN", "TN", "NT", "TT"]


def blas_info():
    """Which BLAS and kernel run, via threadpoolctl when it is installed."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return "; ".join(
        f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} threads={i.get('num_threads')}"
        for i in threadpool_info() if i.get("user_api") == "blas")


def check(x, y, c, rng):
    """Compare a few elements of c with float64 sums computed without BLAS."""
    for _ in range(8):
        i, j = rng.integers(c.shape[0]), rng.integers(c.shape[1])
        want = sum(float(p) * float(q) for p, q in zip(x[i, :], y[:, j]))
        if abs(c[i, j] - want) > 1e-4 * (1 + abs(want)):
            sys.exit(f"numpy result wrong at [{i},{j}]: {c[i, j]} want {want}")


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    shapes = [tuple(int(d) for d in s.split("x")) for s in sys.argv[2:]] or SHAPES
    print("# numpy", np.__version__, "|", blas_info(), file=sys.stderr)
    rng = np.random.default_rng(1)
    for m, k, n in shapes:
        for v in VARIANTS:
            a = rng.uniform(-1, 1, (k, m) if v[0] == "T" else (m, k)).astype(np.float32)
            b = rng.uniform(-1, 1, (n, k) if v[1] == "T" else (k, n)).astype(np.float32)
            x = a.T if v[0] == "T" else a
            y = b.T if v[1] == "T" else b
            c = np.empty((m, n), np.float32)
            np.matmul(x, y, out=c)
            check(x, y, c, rng)
            times, cpu = [], []
            for _ in range(reps):
                t, tc = time.perf_counter(), time.thread_time()
                np.matmul(x, y, out=c)
                times.append(time.perf_counter() - t)
                cpu.append(time.thread_time() - tc)
            gflop = 2 * m * k * n / 1e9
            print(m, k, n, v, f"{gflop / statistics.median(times):.1f}", f"{gflop / statistics.median(cpu):.1f}", flush=True)


if __name__ == "__main__":
    main()
