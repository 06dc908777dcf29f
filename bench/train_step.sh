#!/usr/bin/env bash
# Training step, herd beside PyTorch CPU, every figure in one run:
#   1. the dense config (examples/dense-bench.yaml: vocab 256, d_model 256, 4 layers,
#      4 heads, SwiGLU 768, seq 256, batch 8, AdamW, fp32): tokens/s at THREADS threads,
#      herd's BenchmarkTrainStep beside bench/train_step.py, and the ratio;
#   2. both at 1 thread too: parallel efficiency = tokens/s at THREADS / (THREADS · at 1);
#   3. step time as seq grows 256 -> 512 -> 1024 and d_model 256 -> 512 -> 1024
#      (BenchmarkTrainStepShapes; SwiGLU 3·d_model, 4 heads, batch 8);
#   4. herd's allocations per step, both sides' peak resident memory per config, and the
#      dense step's CPU time (all threads), which a busy machine inflates less than wall time;
#   5. herd only (no PyTorch reference): the dense config in fp8, the tiny MoE preset in
#      fp32 and fp8 (BenchmarkTrainStepPrecision).
#
# usage: bench/train_step.sh [REPS] [THREADS]      (defaults 5 and 2)
#
# BASE_TEST names a trainer test binary of an earlier build (git worktree add /tmp/base
# COMMIT && (cd /tmp/base && go test -c -o /tmp/base.test ./trainer)): each round then also
# runs its dense step right after this build's, and section 1 gives both builds' ratio to
# PyTorch, so that a change is measured side by side with the step it replaces.
#
# Each round runs PyTorch then herd, config by config, so that both see the same machine
# load; figures are medians over REPS rounds (5 timed steps per run, 3 for the larger
# shapes, each after 2 untimed ones). Each run is its own process, so peak memory is per
# config. OpenBLAS (PyTorch's BLAS here) is given the same treatment as in bench/gemm.sh:
# see there. For the dense config PyTorch runs twice a round, with OpenMP's default
# (spinning) wait policy and with OMP_WAIT_POLICY=PASSIVE, and the better median counts:
# on a busy machine spinning threads make a step up to six times slower; the other
# configs use PASSIVE, the better of the two on this project's machines.
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
base=${BASE_TEST:+$(realpath "$BASE_TEST")}
echo "# $threads threads, $reps rounds; PyTorch BLAS: OpenBLAS ${coretype:-auto-detected}; herd: $(go version | cut -d' ' -f3); load average $(cut -d' ' -f1-3 /proc/loadavg)"

# torch KEY THREADS STEPS SEQ DMODEL [WAIT_POLICY]: one PyTorch run, its line appended to KEY.
torch() {
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ${coretype:+OPENBLAS_CORETYPE=$coretype} \
		OPENBLAS_NUM_THREADS="$2" OMP_NUM_THREADS="$2" ${6:+OMP_WAIT_POLICY=$6} \
		"$python" bench/train_step.py "$3" "$2" "$4" "$5" | tee -a "$tmp/$1"
}
# herd KEY THREADS STEPS BENCH [BINARY]: one herd benchmark run, its line appended to KEY.
herd() {
	(cd trainer && GOMAXPROCS="$2" "${5:-$tmp/trainer.test}" -test.run '^$' -test.bench "$4" -test.benchtime "$3x" -test.benchmem) \
		>"$tmp/out" || { cat "$tmp/out"; exit 1; }
	grep -m1 -o 'kernels: .*' "$tmp/out" >"$tmp/kernels" || true
	grep '^Benchmark' "$tmp/out" | tee -a "$tmp/$1"
}

for _ in $(seq "$reps"); do
	torch dense-active "$threads" 5 256 256
	torch dense "$threads" 5 256 256 PASSIVE
	herd dense "$threads" 5 '^BenchmarkTrainStep$'
	[ -n "$base" ] && herd dense-base "$threads" 5 '^BenchmarkTrainStep$' "$base"
	if [ "$threads" -gt 1 ]; then
		torch dense-1 1 5 256 256 PASSIVE
		herd dense-1 1 5 '^BenchmarkTrainStep$'
	fi
	for s in "seq512 512 256" "seq1024 1024 256" "d512 256 512" "d1024 256 1024"; do
		set -- $s
		torch "$1" "$threads" 3 "$2" "$3" PASSIVE
		herd "$1" "$threads" 3 "^BenchmarkTrainStepShapes\$/^$1\$"
	done
	for c in dense/fp8 tiny/fp32 tiny/fp8; do
		herd "${c/\//-}" "$threads" 5 "^BenchmarkTrainStepPrecision\$/^${c%/*}\$/^${c#*/}\$"
	done
done

echo "# herd $(cat "$tmp/kernels")"
"$python" - "$tmp" "$threads" <<'PY'
import os, re, statistics, sys
tmp, threads = sys.argv[1], int(sys.argv[2])
def runs(key):
    path = os.path.join(tmp, key)
    return open(path).read().splitlines() if os.path.exists(path) else []
def med(key, pattern):
    vals = [float(m[1]) for l in runs(key) if (m := re.search(pattern, l))]
    return statistics.median(vals) if vals else float("nan")
def torch(key):
    return (med(key, r"tokens_per_s=([\d.]+)"), med(key, r"step_s=([\d.]+)") * 1e3, med(key, r"peak_mib=([\d.]+)"),
            med(key, r"cpu_ms=([\d.]+)"))
def herd(key):
    return (med(key, r"([\d.]+) tokens/s"), med(key, r"([\d.]+) ms/step"), med(key, r"([\d.]+) peak-MiB"),
            med(key, r"(\d+) allocs/op"), med(key, r"([\d.]+) cpu-ms/step"))

print(f"\n1. dense config, {threads} threads, medians (cpu ms: CPU time of all threads per step)")
print(f"{'':<24} {'tokens/s':>9} {'step ms':>8} {'cpu ms':>7} {'peak MiB':>9} {'allocs/step':>12}")
ta, tp, h = torch("dense-active"), torch("dense"), herd("dense")
print(f"{'PyTorch, OMP spinning':<24} {ta[0]:9.0f} {ta[1]:8.1f} {ta[3]:7.0f} {ta[2]:9.0f}")
print(f"{'PyTorch, OMP passive':<24} {tp[0]:9.0f} {tp[1]:8.1f} {tp[3]:7.0f} {tp[2]:9.0f}")
print(f"{'herd':<24} {h[0]:9.0f} {h[1]:8.1f} {h[4]:7.0f} {h[2]:9.0f} {h[3]:12.0f}")
hb = herd("dense-base")
if runs("dense-base"):
    print(f"{'herd, BASE_TEST build':<24} {hb[0]:9.0f} {hb[1]:8.1f} {hb[4]:7.0f} {hb[2]:9.0f} {hb[3]:12.0f}")
best = max(ta[0], tp[0])
print(f"herd / best PyTorch: {h[0] / best:.2f} tokens/s; PyTorch passive / herd: {tp[3] / h[4]:.2f} CPU time per step")
if runs("dense-base"):
    print(f"BASE_TEST build / best PyTorch: {hb[0] / best:.2f} tokens/s; this build / BASE_TEST build: {h[0] / hb[0]:.3f}")

if threads > 1:
    print(f"\n2. threads, dense config (parallel efficiency = tokens/s at {threads} / ({threads} x at 1))")
    print(f"{'':<10} {'1 thread':>9} {f'{threads} threads':>10} {'efficiency':>10}")
    for name, one, many in (("PyTorch", torch("dense-1")[0], tp[0]), ("herd", herd("dense-1")[0], h[0])):
        print(f"{name:<10} {one:9.0f} {many:10.0f} {many / (threads * one):10.2f}")

print(f"\n3. shapes, {threads} threads: step ms (tokens/s), peak MiB; herd allocations per step")
print(f"{'seq x d_model':<14} {'PyTorch':>17} {'herd':>17} {'herd/PyTorch':>12} {'peak MiB torch/herd':>20} {'allocs':>7}")
for key, label in (("dense", "256 x 256"), ("seq512", "512 x 256"), ("seq1024", "1024 x 256"), ("d512", "256 x 512"), ("d1024", "256 x 1024")):
    t, hh = torch(key), herd(key)
    print(f"{label:<14} {t[1]:8.0f} ({t[0]:6.0f}) {hh[1]:8.0f} ({hh[0]:6.0f}) {hh[0] / t[0]:12.2f} {t[2]:10.0f} /{hh[2]:8.0f} {hh[3]:7.0f}")

print(f"\n4. herd only, {threads} threads: step ms (tokens/s), peak MiB, allocations per step")
for key in ("dense", "dense-fp8", "tiny-fp32", "tiny-fp8"):
    hh = herd(key)
    print(f"{key if key != 'dense' else 'dense-fp32':<12} {hh[1]:8.0f} ({hh[0]:6.0f}) {hh[2]:8.0f} {hh[3]:7.0f}   cpu ms {hh[4]:.0f}")
PY
