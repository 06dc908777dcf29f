package trainer

import "github.com/herdml/herd/trainer/generate"

// Generate continues prompt with the model through its KV cache (see generate.Run). FP8
// scaling, if the run trains in FP8, is frozen meanwhile, as for evaluation: generation
// runs on the checkpoint's scales and records no amax, so that what was generated before
// does not change what comes next.
func (tr *Trainer) Generate(prompt []int32, o generate.Options, emit func(int32)) (ids []int32, stop string) {
	if tr.fp8 != nil {
		tr.fp8.SetFrozen(true)
		defer tr.fp8.SetFrozen(false)
	}
	return generate.Run(tr.Model.NewDecoder(), prompt, o, emit)
}
