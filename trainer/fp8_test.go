package trainer

import "testing"

// The blockwise recipe keeps no scale state from step to step, so a resumed run is
// bit-identical to an uninterrupted one with nothing but the step's pending amaxes saved;
// with E4M3 gradients, as DeepSeek-V3 trains.
func TestDeterministicAndExactResumeFP8Blockwise(t *testing.T) {
	testDeterministicAndExactResume(t, "train.precision=fp8", "train.fp8.recipe=blockwise", "train.fp8.grad_e4m3=true")
}
