// Command fp8dump writes what herd's FP8 emulation computes, for bench/gpu/fp8_check.py to
// hold against an NVIDIA GPU: the codes herd's codecs give every bfloat16 value, and one
// linear layer's three GEMMs (forward, dgrad, wgrad) with their FP8 operands and scales.
//
// usage: fp8dump DIR
//
// Files (little-endian): codes.u8 holds, for each of the 65536 bfloat16 bit patterns b in
// order (the float32 with bits b<<16), four blocks of 65536 codes: E4M3 SatFinite, E4M3
// NoSat, E5M2 SatFinite, E5M2 NoSat. gemm.json gives the shapes and inverse scales; x.u8
// (E4M3, [n,in]), w.u8 (E4M3, [out,in]) and dy.u8 (E5M2, [n,out]) are the quantized
// operands; y.f32, dx.f32 and dw.f32 are herd's emulated outputs of fp8.Linear under the
// current-scaling recipe, whose operands are exactly those codes and scales.
package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/device"
	"github.com/herdml/herd/kernels/fp8"
)

// The layer's shape: a micro-batch of 2048 tokens through a 256 -> 768 projection, the
// dense benchmark config's FFN up projection.
const n, in, out = 2048, 256, 768

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: fp8dump DIR")
		os.Exit(2)
	}
	if err := dump(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "fp8dump:", err)
		os.Exit(1)
	}
}

func dump(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	codes := make([]uint8, 0, 4<<16)
	for _, f := range []fp8.Format{fp8.E4M3, fp8.E5M2} {
		for _, o := range []fp8.Overflow{fp8.SatFinite, fp8.NoSat} {
			for b := range 1 << 16 {
				codes = append(codes, f.Encode(math.Float32frombits(uint32(b)<<16), o))
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "codes.u8"), codes, 0o644); err != nil {
		return err
	}

	// Activations with a few outliers (they set the scale), small weights, and gradients
	// around 1e-4, the ranges a training step sees.
	r := rand.New(rand.NewPCG(1, 2))
	fill := func(v []float32, std float64) {
		for i := range v {
			v[i] = float32(r.NormFloat64() * std)
		}
	}
	x, w, dy := make([]float32, n*in), make([]float32, out*in), make([]float32, n*out)
	fill(x, 1)
	for i := range 16 {
		x[r.IntN(len(x))] = float32(20 + i)
	}
	fill(w, 0.02)
	fill(dy, 1e-4)

	be := device.CPU[float32]()
	upload := func(v []float32) kernels.Buf[float32] {
		b := kernels.Alloc[float32](be, len(v))
		kernels.Upload(be, b, v)
		return b
	}
	xb, wb, dyb := upload(x), upload(w), upload(dy)
	sc, err := fp8.NewScaling(fp8.Config{Recipe: fp8.Current, History: 1}, be)
	if err != nil {
		return err
	}
	lin := sc.Linear("layer")
	y, dx, dw := kernels.Alloc[float32](be, n*out), kernels.Alloc[float32](be, n*in), kernels.Alloc[float32](be, out*in)
	lin.Forward(y, xb, wb, 1, n, in, out)
	lin.Backward(dx, dw, dyb, 1, false)

	// The operands as the current recipe quantizes them: scale = fp8_max/amax in float32.
	quant := func(name string, v kernels.Buf[float32], f fp8.Format) (float32, error) {
		scale := f.Max() / be.Amax(v)
		q := kernels.Alloc[uint8](be, v.Len())
		be.Quantize(q, kernels.Buf[float32]{}, v, scale, f)
		return 1 / scale, os.WriteFile(filepath.Join(dir, name), kernels.ToHost(be, q), 0o644)
	}
	meta := map[string]any{"n": n, "in": in, "out": out}
	for _, op := range []struct {
		name string
		v    kernels.Buf[float32]
		f    fp8.Format
	}{{"x", xb, fp8.E4M3}, {"w", wb, fp8.E4M3}, {"dy", dyb, fp8.E5M2}} {
		inv, err := quant(op.name+".u8", op.v, op.f)
		if err != nil {
			return err
		}
		meta[op.name+"_scale_inv"] = inv
	}
	for name, v := range map[string]kernels.Buf[float32]{"y.f32": y, "dx.f32": dx, "dw.f32": dw} {
		b, err := binary.Append(nil, binary.LittleEndian, kernels.ToHost(be, v))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	j, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "gemm.json"), j, 0o644)
}
