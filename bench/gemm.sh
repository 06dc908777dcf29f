#!/usr/bin/env bash
# GEMM GFLOP/s: herd's BenchmarkMatMul beside numpy/OpenBLAS sgemm, same threads, same run.
#
# usage: bench/gemm.sh [REPS] [THREADS]      (defaults 5 and 2)
#
# For each shape it runs numpy, then herd, alternating, so that both see the same machine
# load; each figure is the median of REPS repetitions. Prints a table with herd/numpy.
# With THREADS=1 it adds GFLOP/s over each side's thread CPU time, which a machine busy
# with other work does not distort: the fairest comparison of the kernels themselves.
#
# OpenBLAS: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for numpy's command alone.
# OpenBLAS 0.3.21 (Debian 12) does not recognise CPUs newer than Cooper Lake and falls back
# to its slow Prescott kernel, so on an AVX-512 CPU the script names SkylakeX (its
# AVX-512 sgemm kernel) unless BLAS_CORETYPE says otherwise (BLAS_CORETYPE= lets it
# detect). gemm.py checks sampled elements of numpy's result, so a wrong kernel fails.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-5}
threads=${2:-2}
python=${PYTHON:-/usr/bin/python3}
if grep -qw avx512f /proc/cpuinfo; then default_core=SkylakeX; else default_core=; fi
coretype=${BLAS_CORETYPE-$default_core}
shapes=(1024x1024x1024 2048x2048x2048 4096x768x3072 2048x256x768)

export CGO_CFLAGS=-Wno-deprecated-declarations
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/cpu.test" ./kernels/cpu

corename=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ${coretype:+OPENBLAS_CORETYPE=$coretype} "$python" -c '
import ctypes, numpy.linalg
for lib in ("libopenblas.so.0", "libblas.so.3"):
    try:
        f = ctypes.CDLL(lib).openblas_get_corename
    except (OSError, AttributeError):
        continue
    f.restype = ctypes.c_char_p
    print(f().decode())
    break
else:
    print("unknown BLAS")')
herd=$("$tmp/cpu.test" -test.run '^TestPickImpl$' -test.v | sed -n 's/.*active kernel: //p')
echo "# $threads threads, median of $reps; numpy: OpenBLAS $corename; herd: cpu/$herd, $(go version | cut -d' ' -f3)"

for s in "${shapes[@]}"; do
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ${coretype:+OPENBLAS_CORETYPE=$coretype} \
		OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" \
		"$python" bench/gemm.py "$reps" "$s" >>"$tmp/numpy.txt"
	GOMAXPROCS="$threads" "$tmp/cpu.test" -test.run '^$' -test.bench "^BenchmarkMatMul\$/^${s}\$/" \
		-test.count "$reps" -test.benchtime 3x >>"$tmp/herd.txt"
done

"$python" - "$tmp/numpy.txt" "$tmp/herd.txt" "$threads" <<'PY'
import re, statistics, sys
numpy = {}
for line in open(sys.argv[1]):
    m, k, n, v, wall, cpu = line.split()
    numpy[(f"{m}x{k}x{n}", v)] = (float(wall), float(cpu))
herd = {}
for line in open(sys.argv[2]):
    r = re.match(r"BenchmarkMatMul/(\S+)/(\w\w)(?:-\d+)?\s.*?([\d.]+) GFLOP/s(?:\s+([\d.]+) cpu-GFLOP/s)?", line)
    if r:
        herd.setdefault((r[1], r[2]), []).append((float(r[3]), float(r[4] or "nan")))
cpu = sys.argv[3] == "1"
head = f"{'M x K x N':<16} {'op':<3} {'numpy':>7} {'herd':>7} {'ratio':>6}"
print(head + ("   (CPU time:) numpy    herd  ratio" if cpu else "") + "   GFLOP/s, ratio = herd/numpy")
ratios, cpu_ratios = [], []
for key, (g, gc) in numpy.items():
    h = statistics.median(w for w, _ in herd[key])
    hc = statistics.median(c for _, c in herd[key])
    ratios.append(h / g)
    line = f"{key[0]:<16} {key[1]:<3} {g:7.1f} {h:7.1f} {h / g:6.2f}"
    if cpu:
        cpu_ratios.append(hc / gc)
        line += f"   {'':>11} {gc:6.1f} {hc:7.1f} {hc / gc:6.2f}"
    print(line)
line = f"{'geometric mean':<28} {'':>7} {statistics.geometric_mean(ratios):6.2f}"
if cpu:
    line += f"   {'':>26} {statistics.geometric_mean(cpu_ratios):6.2f}"
print(line)
PY
