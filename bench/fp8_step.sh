#!/usr/bin/env bash
# FP8 emulation's step time against fp32, side by side: one
# optimizer step of 8 x 256 synthetic tokens (micro-batch 8) of the dense config
# (examples/dense-bench.yaml), the tiny MoE preset and the small MoE preset, in fp32 and
# in fp8 (the default recipe, delayed; fp8-blockwise too with BLOCKWISE=1), herd's
# BenchmarkTrainStepPrecision.
#
# usage: bench/fp8_step.sh [ROUNDS] [THREADS] [MODELS]   (defaults 5, 2, "dense tiny small")
#
# TRAINER_TEST names a trainer test binary built elsewhere (go test -c ./trainer), for a
# machine without Go. BASE_TEST names a second one, an earlier build: each round then also
# runs its fp8 step right before this build's ("fp8@base"), so that a change is measured
# side by side with the step it replaces.
#
# Each round runs every model's precisions back to back, each in its own process (STEPS
# timed steps after 2 untimed ones; STEPS defaults to 5), so that fp32 and fp8 see the same
# machine load; figures are medians over the rounds, and the overhead is also given as the
# median of the per-round ratios, which the round-to-round swings of a shared VM move less.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
threads=${2:-2}
models=${3:-dense tiny small}
steps=${STEPS:-5}
precisions="fp32 fp8"
[ "${BLOCKWISE:-0}" = 1 ] && precisions="$precisions fp8-blockwise"
python=${PYTHON:-/usr/bin/python3}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=${TRAINER_TEST:-}
if [ -z "$bin" ]; then
	bin=$tmp/trainer.test
	CGO_CFLAGS=-Wno-deprecated-declarations go test -c -o "$bin" ./trainer
fi
bin=$(realpath "$bin")
base=${BASE_TEST:+$(realpath "$BASE_TEST")}
echo "# $threads threads, $rounds rounds, $steps timed steps per run; $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# step BINARY ROUND MODEL PRECISION LABEL: one process, one line of runs.
step() {
	(cd trainer && GOMAXPROCS="$threads" "$1" -test.run '^$' \
		-test.bench "^BenchmarkTrainStepPrecision\$/^$3\$/^$4\$" -test.benchtime "${steps}x") >"$tmp/out" ||
		{ cat "$tmp/out"; exit 1; }
	grep '^Benchmark' "$tmp/out" | sed "s/^/$2 $3 $5 /" | tee -a "$tmp/runs"
}
for r in $(seq "$rounds"); do
	for m in $models; do
		for p in $precisions; do
			[ -n "$base" ] && [ "$p" != fp32 ] && step "$base" "$r" "$m" "$p" "$p@base"
			step "$bin" "$r" "$m" "$p" "$p"
		done
	done
done
[ -n "$base" ] && precisions=$(for p in $precisions; do [ "$p" != fp32 ] && printf '%s@base ' "$p"; printf '%s ' "$p"; done)

"$python" - "$tmp/runs" "$precisions" <<'PY'
import re, statistics, sys
from collections import defaultdict
runs, precisions = open(sys.argv[1]).read().splitlines(), sys.argv[2].split()
val = defaultdict(dict)  # (model, precision) -> round -> (ms, cpu ms)
for line in runs:
    r, m, p = line.split()[:3]
    ms = float(re.search(r"([\d.]+) ms/step", line)[1])
    cpu = float(re.search(r"([\d.]+) cpu-ms/step", line)[1])
    val[m, p][r] = (ms, cpu)
med = statistics.median
print(f"\n{'model':<7} {'precision':<14} {'ms/step':>8} {'cpu-ms':>7} {'vs fp32 (medians)':>18} {'median of per-round ratios':>27} {'(of cpu-ms)':>12}")
for m in dict.fromkeys(k[0] for k in val):
    base = val[m, "fp32"]
    for p in precisions:
        v = val[m, p]
        ms, cpu = med(x[0] for x in v.values()), med(x[1] for x in v.values())
        row = f"{m:<7} {p:<14} {ms:8.1f} {cpu:7.1f}"
        if p != "fp32":
            b_ms = med(x[0] for x in base.values())
            ratios = [v[r][0] / base[r][0] for r in v if r in base]
            cpu_ratios = [v[r][1] / base[r][1] for r in v if r in base]
            row += f" {100 * (ms / b_ms - 1):+17.1f}% {100 * (med(ratios) - 1):+26.1f}% {100 * (med(cpu_ratios) - 1):+11.1f}%"
        print(row)
PY
