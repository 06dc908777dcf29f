package fp8_test

import (
	"encoding/json"
	"fmt"

	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/device"
	"github.com/herdml/herd/kernels/fp8"
)

// A training step through FP8 linears: q and k read the same input, so k shares q's FP8
// copy of it. The trainer checks and updates the scales once per optimizer step and saves
// the state with the checkpoint. With power-of-two scales these small values are exact in
// E4M3; in general each operand is rounded to 3 mantissa bits. The operands live in the
// backend's buffers; the host uploads the inputs and downloads the results.
func Example() {
	be := device.CPU[float32]()
	buf := func(v ...float32) kernels.Buf[float32] {
		b := kernels.Alloc[float32](be, len(v))
		kernels.Upload(be, b, v)
		return b
	}
	host := func(b kernels.Buf[float32]) []float32 {
		v := make([]float32, b.Len())
		kernels.Download(be, v, b)
		return v
	}
	scaling, err := fp8.NewScaling(fp8.Config{Recipe: fp8.Delayed, History: 4, Pow2: true}, be)
	if err != nil {
		panic(err)
	}
	q := scaling.Linear("layers.0.attn.wq")
	k := scaling.LinearSharingInput("layers.0.attn.wk", q)

	const n, c = 2, 4                       // 2 tokens, width 4
	x := buf(1, -2, 0.5, 3, 0.25, 1, -1, 2) // [n, c]
	wq := buf(1, 0, 0, 0, 0, 1, 0, 0)       // [2, c]
	wk := buf(0, 0, 1, 0, 0, 0, 0, 1)       // [2, c]
	yq, yk := kernels.Alloc[float32](be, n*2), kernels.Alloc[float32](be, n*2)
	q.Forward(yq, x, wq, 1, n, c, 2)
	k.Forward(yk, x, wk, 1, n, c, 2)
	fmt.Println("q:", host(yq), "k:", host(yk))

	dx := kernels.Alloc[float32](be, n*c)
	dwq, dwk := kernels.Alloc[float32](be, 2*c), kernels.Alloc[float32](be, 2*c)
	k.Backward(dx, dwk, buf(1, 0, 0, 1), 1, false)
	q.Backward(dx, dwq, buf(0, 1, 1, 0), 1, true)
	fmt.Println("dx:", host(dx))

	if err := scaling.Check(); err != nil {
		panic(err)
	}
	if err := scaling.Update(); err != nil {
		panic(err)
	}
	state, _ := json.Marshal(scaling.State().Tensors[0])
	fmt.Println(string(state))
	// Output:
	// q: [1 -2 0.25 1] k: [0.5 3 -1 2]
	// dx: [0 1 1 0 1 0 0 1]
	// {"name":"layers.0.attn.wq.input","format":"E4M3","scale":128,"ready":true,"amax":0,"history":[0,0,0,3]}
}
