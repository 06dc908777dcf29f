#!/usr/bin/env bash
# GPU checks, for a machine with an NVIDIA Hopper GPU (H100/H200), CUDA's nvcc and PyTorch:
# NVML through herd (internal/gpu's test and `herd gpus`), then herd's FP8 codecs and
# emulated FP8 GEMMs against the GPU's own conversions and cuBLASLt's FP8 tensor-core GEMMs
# (bench/gpu/fp8_check.py). herd itself needs no GPU; this shows that its CPU emulation
# computes what the hardware computes.
#
# usage: bench/gpu/check.sh [BINDIR]
#
# With Go installed it builds what it runs; on a machine without Go, BINDIR holds the
# binaries built elsewhere: herd, gpu.test (go test -c ./internal/gpu) and fp8dump
# (go build ./tools/fp8dump).
set -uo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -z "$bin" ]; then
	bin=$work/bin
	export CGO_CFLAGS=-Wno-deprecated-declarations
	go build -o "$bin/herd" ./cmd/herd && go test -c -o "$bin/gpu.test" ./internal/gpu &&
		go build -o "$bin/fp8dump" ./tools/fp8dump || exit 1
fi
status=0
step() { echo "== $*"; "$@" || { echo "FAILED: $*"; status=1; }; }
step nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
step "$bin/gpu.test" -test.v -test.run TestList
step "$bin/herd" gpus
step "$bin/fp8dump" "$work/fp8"
step nvcc -O2 -arch=sm_90 -o "$work/fp8_cvt" bench/gpu/fp8_cvt.cu
step "$work/fp8_cvt" "$work/fp8/gpu_codes.u8"
step python3 bench/gpu/fp8_check.py "$work/fp8"
exit $status
