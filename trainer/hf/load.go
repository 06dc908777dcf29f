package hf

import (
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/trainer/model"
)

// Load reads the Llama in dir (see Read) into a model on be, for micro-batches of up to
// microBatch sequences: forward multipliers 1 and attention scale 1/sqrt(D), the forward
// pass transformers computes. It is how `herd generate` runs a Hugging Face folder.
func Load(dir string, be kernels.Backend[float32], microBatch int) (*model.Model[float32], error) {
	cfg, tensors, err := Read(dir)
	if err != nil {
		return nil, err
	}
	m := model.New[float32](cfg, be, microBatch)
	params := kernels.ToHost(be, m.Params)
	for i, t := range tensors { // Read returns them in the layout's order
		lt := m.Layout.Tensors[i]
		copy(params[lt.Offset:lt.Offset+lt.Size()], t.Data)
	}
	kernels.Upload(be, m.Params, params)
	return m, nil
}
