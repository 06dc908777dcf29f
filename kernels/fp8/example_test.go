package fp8_test

import (
	"encoding/json"
	"fmt"

	"github.com/herdml/herd/kernels/cpu"
	"github.com/herdml/herd/kernels/fp8"
)

// A training step through FP8 linears: q and k read the same input, so k shares q's FP8
// copy of it. The trainer checks and updates the scales once per optimizer step and saves
// the state with the checkpoint. With power-of-two scales these small values are exact in
// E4M3; in general each operand is rounded to 3 mantissa bits.
func Example() {
	be := cpu.New[float32]()
	scaling, err := fp8.NewScaling(fp8.Config{Recipe: fp8.Delayed, History: 4, Pow2: true}, be)
	if err != nil {
		panic(err)
	}
	q := scaling.Linear("layers.0.attn.wq")
	k := scaling.LinearSharingInput("layers.0.attn.wk", q)

	const n, c = 2, 4                             // 2 tokens, width 4
	x := []float32{1, -2, 0.5, 3, 0.25, 1, -1, 2} // [n, c]
	wq := []float32{1, 0, 0, 0, 0, 1, 0, 0}       // [2, c]
	wk := []float32{0, 0, 1, 0, 0, 0, 0, 1}       // [2, c]
	yq, yk := make([]float32, n*2), make([]float32, n*2)
	q.Forward(yq, x, wq, 1, n, c, 2)
	k.Forward(yk, x, wk, 1, n, c, 2)
	fmt.Println("q:", yq, "k:", yk)

	dx := make([]float32, n*c)
	dwq, dwk := make([]float32, 2*c), make([]float32, 2*c)
	k.Backward(dx, dwk, []float32{1, 0, 0, 1}, 1, false)
	q.Backward(dx, dwq, []float32{0, 1, 1, 0}, 1, true)
	fmt.Println("dx:", dx)

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
