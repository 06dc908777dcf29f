#!/usr/bin/env bash
# Training step tokens/s: herd's BenchmarkTrainStep (package trainer, on
# examples/dense-bench.yaml) beside PyTorch CPU on the same model (bench/train_step.py),
# same threads, same run.
#
# usage: bench/train_step.sh [REPS] [THREADS]      (defaults 5 and 2)
#
# REPS rounds, each running PyTorch (5 timed steps, median) then herd (5 steps); prints the
# median tokens/s of each over the rounds and herd/PyTorch. OpenBLAS (PyTorch's BLAS here)
# is given the same treatment as in bench/gemm.sh: see there. PyTorch runs twice a round,
# with OpenMP's default (spinning) wait policy and with OMP_WAIT_POLICY=PASSIVE, and the
# better of the two medians counts: on a busy machine spinning threads make a step up to
# six times slower.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-5}
threads=${2:-2}
python=${PYTHON:-/usr/bin/python3}
if grep -qw avx512f /proc/cpuinfo; then default_core=SkylakeX; else default_core=; fi
coretype=${BLAS_CORETYPE-$default_core}

export CGO_CFLAGS=-Wno-deprecated-declarations
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/trainer.test" ./trainer
echo "# $threads threads, $reps rounds; PyTorch BLAS: OpenBLAS ${coretype:-auto-detected}; herd: $(go version | cut -d' ' -f3)"

for _ in $(seq "$reps"); do
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ${coretype:+OPENBLAS_CORETYPE=$coretype} \
		OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" \
		"$python" bench/train_step.py 5 "$threads" | tee -a "$tmp/torch-active.txt"
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ${coretype:+OPENBLAS_CORETYPE=$coretype} \
		OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" OMP_WAIT_POLICY=PASSIVE \
		"$python" bench/train_step.py 5 "$threads" | tee -a "$tmp/torch-passive.txt"
	(cd trainer && GOMAXPROCS="$threads" "$tmp/trainer.test" -test.run '^$' -test.bench '^BenchmarkTrainStep$' \
		-test.benchtime 5x) | grep '^Benchmark' | tee -a "$tmp/herd.txt"
done

"$python" - "$tmp/torch-active.txt" "$tmp/torch-passive.txt" "$tmp/herd.txt" <<'PY'
import re, statistics, sys
def median(path, pattern):
    return statistics.median(float(re.search(pattern, l)[1]) for l in open(path))
active = median(sys.argv[1], r"tokens_per_s=([\d.]+)")
passive = median(sys.argv[2], r"tokens_per_s=([\d.]+)")
h = median(sys.argv[3], r"([\d.]+) tokens/s")
t = max(active, passive)
print(f"{'':<26} {'tokens/s':>9} {'step ms':>8}")
print(f"{'PyTorch, OMP spinning':<26} {active:9.0f} {2048e3 / active:8.1f}")
print(f"{'PyTorch, OMP passive':<26} {passive:9.0f} {2048e3 / passive:8.1f}")
print(f"{'herd':<26} {h:9.0f} {2048e3 / h:8.1f}")
print(f"herd / best PyTorch: {h / t:.2f}")
PY
