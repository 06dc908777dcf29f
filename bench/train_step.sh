#!/usr/bin/env bash
# Training step tokens/s: herd's BenchmarkTrainStep (package trainer, on
# examples/dense-bench.yaml) beside PyTorch CPU on the same model (bench/train_step.py),
# same threads, same run.
#
# usage: bench/train_step.sh [REPS] [THREADS]      (defaults 5 and 2)
#
# REPS rounds, each running PyTorch (5 timed steps, median) then herd (5 steps); prints the
# median tokens/s of each over the rounds and herd/PyTorch. OpenBLAS (PyTorch's BLAS here)
# is given the same treatment as in bench/gemm.sh: see there.
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
		"$python" bench/train_step.py 5 "$threads" | tee -a "$tmp/torch.txt"
	(cd trainer && GOMAXPROCS="$threads" "$tmp/trainer.test" -test.run '^$' -test.bench '^BenchmarkTrainStep$' \
		-test.benchtime 5x) | grep '^Benchmark' | tee -a "$tmp/herd.txt"
done

"$python" - "$tmp/torch.txt" "$tmp/herd.txt" <<'PY'
import re, statistics, sys
torch = [float(re.search(r"tokens_per_s=([\d.]+)", l)[1]) for l in open(sys.argv[1])]
herd = [float(re.search(r"([\d.]+) tokens/s", l)[1]) for l in open(sys.argv[2])]
t, h = statistics.median(torch), statistics.median(herd)
print(f"{'':<8} {'tokens/s':>9} {'step ms':>8}")
print(f"{'PyTorch':<8} {t:9.0f} {2048e3 / t:8.1f}")
print(f"{'herd':<8} {h:9.0f} {2048e3 / h:8.1f}")
print(f"herd/PyTorch: {h / t:.2f}")
PY
