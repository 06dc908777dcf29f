package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/fp8"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/config"
)

// Run trains until untilStep steps are done (untilStep <= 0: train.steps). It checkpoints
// every train.checkpoint.every steps and when it reaches untilStep, evaluates every
// train.eval.every steps and at untilStep, and calls Options.BeforeStep before and
// Options.Progress after each step. On rank 0 it appends each step's row to the run's
// metrics history after the step's evaluation and before its checkpoint (history.go),
// having opened the history, truncated to the step the trainer is at, if it was not open. It stops between steps when ctx is done, returning
// ctx's error; the last committed checkpoint is then where a later Resume continues (the
// caller may Save first). A rank of a group spanning processes stops when any rank's ctx
// is done, all after the same step, returning context.Canceled (see interrupted). It
// returns the last step's Stats.
func (tr *Trainer) Run(ctx context.Context, untilStep int64) (st Stats, err error) {
	defer func() {
		// Whichever way Run ends, its checkpoints are written when it returns.
		if ferr := tr.flush(); err == nil {
			err = ferr
		}
	}()
	if untilStep <= 0 {
		untilStep = int64(tr.Cfg.Train.Steps)
	}
	tr.openHistory()
	for tr.step < untilStep {
		if tr.opts.BeforeStep != nil {
			tr.opts.BeforeStep(ctx, tr.Cfg.Name, tr.step)
		}
		if err := tr.interrupted(ctx); err != nil {
			return st, err
		}
		start := time.Now()
		if st, err = tr.Step(); err != nil {
			return st, err
		}
		took := time.Since(start)
		last := tr.step == untilStep
		if ev := tr.Cfg.Train.Eval; tr.eval != nil && (last || every(tr.step, ev.Every)) {
			res, err := tr.Eval(ev.Batches)
			if err != nil {
				return st, err
			}
			st.Eval = &res
		}
		tr.appendHistory(st, took)
		if last || every(tr.step, tr.Cfg.Train.Checkpoint.Every) {
			if st.Checkpoint, err = tr.queueSave(); err != nil {
				return st, err
			}
		}
		if tr.opts.Progress != nil {
			tr.opts.Progress(st)
		}
	}
	return st, nil
}

func every(step int64, n int) bool { return n > 0 && step%int64(n) == 0 }

// metaAdamT is the key, in optim.safetensors' metadata, of AdamW's update count.
const metaAdamT = "adam_t"

// hostState is what a checkpoint holds of the backend's memory, in host memory: the
// parameters and AdamW's moments, crossed with kernels.ToHost (the CPU backend's own
// buffers, no copy; a download from a device) and, after a load, back with upload.
type hostState struct{ params, m, v []float32 }

// toHost crosses the parameters and moments into host memory.
func (tr *Trainer) toHost() hostState {
	be := tr.opts.Backend
	return hostState{kernels.ToHost(be, tr.Model.Params), kernels.ToHost(be, tr.opt.M), kernels.ToHost(be, tr.opt.V)}
}

// upload writes h back into the backend's buffers: nothing to do on the CPU, where h is
// their memory.
func (tr *Trainer) upload(h hostState) {
	be := tr.opts.Backend
	kernels.Upload(be, tr.Model.Params, h.params)
	kernels.Upload(be, tr.opt.M, h.m)
	kernels.Upload(be, tr.opt.V, h.v)
}

// snapshot views h as checkpoint tensors, without copying: Save writes from them and Load
// fills them. The model's tensors are every tensor, except with LoRA adapters, where they
// are the adapters alone (the frozen base is init.from's, named by path and hash in the
// state: see lora.go); the optimizer's are the trainable tensors' moments.
func (tr *Trainer) snapshot(h hostState) checkpoint.Snapshot {
	lay := tr.Model.Layout
	var s checkpoint.Snapshot
	lora := len(lay.Adapters) > 0
	for _, t := range lay.Tensors {
		lo, hi := t.Offset, t.Offset+t.Size()
		if !lora || !t.Frozen() {
			s.Model = append(s.Model, checkpoint.Tensor{Name: t.Name, Shape: t.Shape, Data: h.params[lo:hi]})
		}
		if t.Frozen() {
			continue
		}
		lo, hi = t.Grad, t.Grad+t.Size()
		s.Optim = append(s.Optim,
			checkpoint.Tensor{Name: "m." + t.Name, Shape: t.Shape, Data: h.m[lo:hi]},
			checkpoint.Tensor{Name: "v." + t.Name, Shape: t.Shape, Data: h.v[lo:hi]})
	}
	return s
}

// save writes a checkpoint of the current step from this rank (Save calls it on rank 0
// once all ranks agree), applies the retention policy (train.checkpoint.keep) and returns
// the checkpoint's name. With train.checkpoint.async it copies the state and queues it for
// the uploader instead, returning the name the checkpoint will have once written (see
// flush).
func (tr *Trainer) save() (string, error) {
	if tr.train == nil {
		return "", errOpened
	}
	rng, err := tr.rng.MarshalBinary()
	if err != nil {
		return "", err
	}
	h := tr.toHost()
	if tr.uploads != nil {
		h = hostCopy(h)
	}
	s := tr.snapshot(h)
	s.OptimMeta = map[string]string{metaAdamT: strconv.FormatInt(tr.opt.T, 10)}
	s.State = checkpoint.State{
		Step:       tr.step,
		Data:       tr.dataStates(),
		RNG:        rng,
		Config:     tr.configJSON,
		ConfigHash: tr.configHash,
		TableHash:  tr.Table.Hash(),
		Lineage:    tr.lineage,
	}
	if tr.baseHash != "" {
		s.State.Base, s.State.BaseSHA256 = tr.Cfg.Init.From, tr.baseHash
	}
	if tr.fp8 != nil {
		if s.State.FP8, err = json.Marshal(tr.fp8.State()); err != nil {
			return "", fmt.Errorf("encoding the FP8 state: %w", err)
		}
	}
	up := upload{snap: s, store: tr.store, keep: tr.Cfg.Train.Checkpoint.Keep, history: tr.historyUpload()}
	if tr.uploads != nil {
		return checkpoint.Name(tr.step), tr.uploads.add(up)
	}
	return up.commit()
}

// flush waits for the checkpoints written in the background (train.checkpoint.async) and
// returns the first failure; without them it returns nil at once.
func (tr *Trainer) flush() error {
	if tr.uploads == nil {
		return nil
	}
	return tr.uploads.flush()
}

// Resume loads a checkpoint: path names a checkpoint folder, or is empty for the newest
// valid checkpoint of this run. Newer checkpoints that fail verification are skipped, each
// with a warning through Options.Warn; rank 0, which owns the run's folder, moves them
// aside (checkpoint.Recover), so that the steps they held are saved afresh and retention
// never counts them. It returns the name loaded, or "" when path is empty and the run has
// no checkpoint yet (training then starts from the initialisation). A checkpoint of
// another config or MetaP table is refused with a user error that says what differs; an
// unreadable one with a user error naming the file.
func (tr *Trainer) Resume(path string) (string, error) {
	store, name := tr.store, ""
	if path != "" {
		var err error
		if store, name, err = checkpoint.At(path); err != nil {
			return "", err
		}
	} else {
		find := checkpoint.Latest
		if tr.rank == 0 {
			find = checkpoint.Recover
		}
		var warnings []string
		var err error
		name, warnings, err = find(store)
		for _, w := range warnings {
			tr.warn(w)
		}
		if errors.Is(err, checkpoint.ErrNone) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
	}
	if err := tr.loadAll(store, name); err != nil {
		return name, err
	}
	// The history follows the checkpoint: the next Run reopens it at this step.
	return name, tr.closeHistory()
}

// load reads checkpoint name into the trainer after checking that it was trained with
// configHash and with this trainer's MetaP table.
func (tr *Trainer) load(store checkpoint.Storage, name, configHash string) error {
	h := tr.toHost()
	s := tr.snapshot(h)
	var changes []config.Change
	check := func(st checkpoint.State) error {
		var err error
		if changes, err = checkpoint.Compatible(store, name, st, tr.configJSON, configHash, tr.Table.Hash(), tr.opts.Changes); err != nil {
			return err
		}
		return tr.checkBase(store, name, st)
	}
	if err := checkpoint.Load(store, name, &s, check); err != nil {
		return err
	}
	tr.upload(h)
	st := s.State
	pos, err := dataState(name, st.Data)
	if err != nil {
		return err
	}
	if tr.train != nil {
		if err := tr.train.Restore(pos); err != nil {
			return err
		}
	}
	t, err := strconv.ParseInt(s.OptimMeta[metaAdamT], 10, 64)
	if err != nil {
		return fmt.Errorf("checkpoint %s: optimizer step count %q: %w", name, s.OptimMeta[metaAdamT], err)
	}
	if err := tr.rng.UnmarshalBinary(st.RNG); err != nil {
		return fmt.Errorf("checkpoint %s: rng state: %w", name, err)
	}
	if tr.fp8 != nil {
		where := checkpoint.Where(store, name, checkpoint.StateFile)
		var fs fp8.State
		if err := json.Unmarshal(st.FP8, &fs); err != nil {
			return usererr.New(where, "fp8: %v", err)
		}
		if err := tr.fp8.Restore(fs, where); err != nil {
			return err
		}
	}
	tr.opt.T, tr.step = t, st.Step
	tr.lineage = append(st.Lineage[:len(st.Lineage):len(st.Lineage)], changes...)
	return nil
}

func (tr *Trainer) warn(msg string) {
	if tr.opts.Warn != nil {
		tr.opts.Warn(msg)
	}
}
