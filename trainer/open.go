package trainer

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"syscall"

	"github.com/herdml/herd/internal/sysmem"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/config"
)

// Open loads the checkpoint folder path (or, given a run's folder, its newest valid
// checkpoint; skipped ones are reported through opts.Warn) with the configuration it was trained with (kept
// in its state.json), for evaluation and export: no training data is opened, and Step
// refuses to run. evalSpec names the data Eval reads (same forms as data.eval; "" = none).
// The checkpoint is refused if the MetaP rules of this herd give another table than the
// one it was trained with, since its forward multipliers would differ. A path that is a
// file, or runs through one, is a user error naming it. It runs on opts.Backend, else on
// the CPU: the device a run trained on (train.device) need not be present where its
// checkpoints are evaluated or exported.
func Open(path, evalSpec string, opts Options) (*Trainer, error) {
	if fi, err := os.Stat(path); (err == nil && !fi.IsDir()) || errors.Is(err, syscall.ENOTDIR) {
		return nil, usererr.New(path, "is a file, not a checkpoint folder: name a checkpoint folder (such as runs/tiny/step-00000300) or a run folder holding one")
	}
	store, name, warnings, err := checkpoint.Find(path)
	for _, w := range warnings {
		if opts.Warn != nil {
			opts.Warn(w)
		}
	}
	if err != nil {
		return nil, err
	}
	st, err := checkpoint.ReadState(store, name)
	if err != nil {
		return nil, err
	}
	where := checkpoint.Where(store, name, checkpoint.StateFile)
	var cfg config.Run
	if err := json.Unmarshal(st.Config, &cfg); err != nil {
		return nil, usererr.New(where, "unreadable checkpoint: config: %v", err)
	}
	cfg.Train.Device = config.Default().Train.Device
	if err := cfg.Validate(); err != nil {
		return nil, usererr.New(where, "the checkpoint's config is not valid for this herd: %v", err)
	}
	if err := cfg.CheckMemory(1, sysmem.Lookup()); err != nil {
		return nil, err
	}
	cfg.Data.Eval = evalSpec
	tr, err := build(cfg, opts)
	if err != nil {
		return nil, err
	}
	tr.store = store
	if len(tr.Model.Layout.Adapters) > 0 {
		if err := tr.loadBase(); err != nil {
			return nil, err
		}
	}
	if err := tr.openData(false); err != nil {
		return nil, err
	}
	if err := tr.load(store, name, st.ConfigHash); err != nil {
		tr.Close()
		return nil, err
	}
	return tr, nil
}

// Close releases the data sources' files, the metrics history and the run folder's lock.
func (tr *Trainer) Close() error {
	first := tr.closeRanks()
	if err := tr.closeHistory(); err != nil {
		first = err
	}
	for _, s := range []any{tr.train, tr.eval} {
		if c, ok := s.(io.Closer); ok {
			if err := c.Close(); err != nil && first == nil {
				first = err
			}
		}
	}
	if tr.uploads != nil {
		if err := tr.uploads.close(); err != nil && first == nil {
			first = err
		}
		tr.uploads = nil
	}
	if tr.lock != nil {
		if err := tr.lock.Close(); err != nil && first == nil {
			first = err
		}
		tr.lock = nil
	}
	return first
}
