package trainer

import (
	"github.com/herdml/herd/data"
	"github.com/herdml/herd/trainer/config"
)

// openSource opens the data that spec names (data.synthetic: random tokens instead) for
// rank of world, in batches of globalBatch sequences split into train.micro_batch
// micro-batches.
func openSource(cfg config.Run, spec string, globalBatch, rank, world int) (data.Source, error) {
	m, t, d := cfg.Model, cfg.Train, cfg.Data
	if d.Synthetic {
		return data.OpenSynthetic(m.VocabSize, m.SeqLen, globalBatch, t.MicroBatch, rank, world, d.ShuffleSeed)
	}
	return data.Open(spec, m.SeqLen, globalBatch, t.MicroBatch, rank, world, d.ShuffleSeed)
}
