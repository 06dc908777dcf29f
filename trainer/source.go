package trainer

import (
	"github.com/herdml/herd/data"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/config"
)

// openSource opens the data that spec names for rank of world, in batches of globalBatch
// sequences split into train.micro_batch micro-batches.
func openSource(cfg config.Run, spec string, globalBatch, rank, world int) (data.Source, error) {
	if cfg.Data.Synthetic {
		return nil, usererr.New("data.synthetic", "not available yet")
	}
	return data.OpenText(spec, cfg.Model.SeqLen, globalBatch, cfg.Train.MicroBatch, rank, world, cfg.Data.ShuffleSeed)
}
