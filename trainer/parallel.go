package trainer

// This file is data parallelism: parallel.data ranks each compute the gradients of their
// share of the global batch, sum them, and apply the same update, so that their weights
// stay replicated. `herd train` runs the ranks in-process (rank 0 is the Trainer that New
// returns and drives the others); the orchestrator runs one rank per worker over the same
// collective code.
//
// Gradients are summed in one canonical binary tree over the global batch's micro-batch
// units, whatever rank computed them: each unit's gradient is computed alone (scaled by
// 1/units), a rank adds its own units in the tree (collective.Tree), then the ranks add
// their sums in the same tree (collective.Group.AllReduceTree). When every rank holds a
// power-of-two number of units (global_batch / (micro_batch × parallel.data) = 1, 2, 4,
// ...), the result is the tree over all units, so weights, losses and checkpoints are
// bit-identical for every such world size, one rank included. Otherwise they are still
// bit-identical from run to run at one world size.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/collective"
	"github.com/herdml/herd/trainer/model"
)

// accumulator sums one step's micro-batch gradients in the canonical tree and keeps each
// unit's loss, aux and expert load for the step's statistics. The tree's vectors are
// backend buffers, added by the backend (deviceVectors): only a step's sum crosses to the
// host, for the collective's staging when there are several ranks.
type accumulator struct {
	tree  *collective.Tree[kernels.Buf[float32]] // at most log2(units)+2 gradient buffers are ever live
	units []float64                              // per unit: loss, aux, then each expert's load, layer by layer
}

// deviceVectors are a Tree's vectors in a backend's memory: Add is Axpy with a = 1, one
// rounding of dst[i] + src[i], as the collective's host adds.
type deviceVectors struct{ be kernels.Backend[float32] }

func (d deviceVectors) Make(n int) kernels.Buf[float32]   { return kernels.Alloc[float32](d.be, n) }
func (d deviceVectors) Len(v kernels.Buf[float32]) int    { return v.Len() }
func (d deviceVectors) Add(dst, src kernels.Buf[float32]) { d.be.Axpy(dst, src, 1) }

// unitDone moves the gradient of micro-batch i just back-propagated out of the model into
// the tree, leaving the model's gradients zero for the next unit. The first unit of a step
// drops what a step that failed half-way may have left.
func (tr *Trainer) unitDone(i int, r model.Result) {
	a, be, g := &tr.acc, tr.opts.Backend, tr.Model.Grads
	if a.tree == nil {
		a.tree = collective.NewTree[kernels.Buf[float32]](deviceVectors{be})
	}
	if i == 0 {
		if s, ok := a.tree.Sum(); ok {
			a.tree.Release(s)
		}
		a.units = a.units[:0]
	}
	buf := a.tree.Buffer(g.Len())
	kernels.Copy(be, buf, g)
	kernels.Zero(be, g)
	a.tree.Push(buf)
	a.units = append(a.units, r.Loss, r.Aux)
	for _, l := range r.ExpertLoad {
		a.units = append(a.units, l...)
	}
}

// reduce puts the step's gradient, summed over every unit of every rank, into the model's
// gradients, and on several ranks recomputes st's loss, aux and expert load over the
// global batch, in the order one rank would have used. The ranks' all-reduce runs on the
// host (the TCP collective is not device-aware): the local sum crosses with ToHost and
// back with Upload, both free on the CPU.
func (tr *Trainer) reduce(st *Stats) error {
	a, be := &tr.acc, tr.opts.Backend
	sum, _ := a.tree.Sum()
	defer a.tree.Release(sum)
	units := a.units
	a.units = a.units[:0]
	if tr.dp == nil {
		kernels.Copy(be, tr.Model.Grads, sum)
		return nil
	}
	g := tr.dp.group
	host := kernels.ToHost(be, sum)
	if err := g.AllReduceTree(context.Background(), host); err != nil {
		return err
	}
	kernels.Upload(be, sum, host)
	kernels.Copy(be, tr.Model.Grads, sum)
	all, err := g.AllGather(context.Background(), float64Bytes(units))
	if err != nil {
		return err
	}
	n := float64(tr.nMicro * g.World())
	st.Loss, st.Aux, st.ExpertLoad = 0, 0, nil
	per := len(units) / tr.nMicro
	for _, b := range all {
		u := bytesFloat64(b)
		if len(u) != len(units) {
			return fmt.Errorf("data parallel: a rank sent %d unit statistics, this rank has %d", len(u), len(units))
		}
		for ; len(u) > 0; u = u[per:] {
			st.Loss += u[0] / n
			st.Aux += u[1] / n
			addLoad(&st.ExpertLoad, tr.splitLoad(u[2:per]), 1/n)
		}
	}
	return nil
}

// splitLoad views a unit's flat expert loads as the model reports them: per MoE layer,
// one value per expert.
func (tr *Trainer) splitLoad(flat []float64) [][]float64 {
	e := tr.Cfg.Model.MoE.Experts
	var out [][]float64
	for ; e > 0 && len(flat) >= e; flat = flat[e:] {
		out = append(out, flat[:e])
	}
	return out
}

func float64Bytes(v []float64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return b
}

func bytesFloat64(b []byte) []float64 {
	v := make([]float64, len(b)/8)
	for i := range v {
		v[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return v
}

// dataParallel is a rank's place in its group. Rank 0 of an in-process group also holds
// the other ranks' trainers and drives them.
type dataParallel struct {
	group    *collective.Group
	siblings []*Trainer // ranks 1..W-1, in-process, on rank 0 only
	state    data.State // the data position every rank reported at the last Save
}

// joinGroup makes tr a rank of Options.Group, if given.
func (tr *Trainer) joinGroup() error {
	g := tr.opts.Group
	if g == nil {
		return nil
	}
	if g.World() != tr.Cfg.Parallel.Data {
		return fmt.Errorf("trainer: a collective group of %d ranks for parallel.data = %d", g.World(), tr.Cfg.Parallel.Data)
	}
	tr.rank, tr.dp = g.Rank(), &dataParallel{group: g}
	return nil
}

// startRanks makes the in-process ranks 1..parallel.data-1 beside tr, which becomes rank
// 0, each with its own model, optimizer and data share, joined by a loopback group.
func (tr *Trainer) startRanks() error {
	world := tr.Cfg.Parallel.Data
	if tr.opts.Train != nil {
		return errors.New("trainer: Options.Train is one source; parallel.data ranks each open their own share of data.train")
	}
	groups, err := collective.NewLocal(world, collective.Options{})
	if err != nil {
		return err
	}
	tr.dp = &dataParallel{group: groups[0]}
	for r := 1; r < world; r++ {
		sib, err := build(tr.Cfg, tr.opts)
		if err == nil {
			sib.rank = r
			sib.dp = &dataParallel{group: groups[r]}
			err = sib.openData(true)
		}
		if err != nil {
			for _, g := range groups[r:] {
				g.Close()
			}
			return err
		}
		tr.dp.siblings = append(tr.dp.siblings, sib)
	}
	return nil
}

// ranks runs f on every in-process rank at once (tr alone when it has no siblings) and
// returns rank 0's result. If a rank fails, the group is closed so that the others stop
// waiting for it, and the first rank's own error (not a consequence like ErrClosed) is
// returned; the trainer cannot step again.
func ranks[T any](tr *Trainer, f func(*Trainer) (T, error)) (T, error) {
	if tr.dp == nil || len(tr.dp.siblings) == 0 {
		return f(tr)
	}
	all := append([]*Trainer{tr}, tr.dp.siblings...)
	res := make([]T, len(all))
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	var abort sync.Once
	for r, t := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res[r], errs[r] = f(t); errs[r] != nil {
				abort.Do(func() {
					for _, t := range all {
						t.dp.group.Close()
					}
				})
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, collective.ErrClosed) {
			return res[0], err
		}
	}
	return res[0], errors.Join(errs...)
}

// Step runs one optimizer step on every rank: each rank's micro-batches, the gradients
// summed over all ranks, clipping, the schedule and AdamW. The Stats are rank 0's, with
// the loss of the global batch. A non-finite loss or gradient norm stops it before any
// weight changes, with a user error naming the step.
func (tr *Trainer) Step() (Stats, error) {
	st, err := ranks(tr, (*Trainer).localStep)
	if tr.dp != nil {
		// Every rank reads micro-batches of the same shape: the process did this many.
		n := int64(1 + len(tr.dp.siblings))
		st.Tokens *= n
		st.TokensPerS *= float64(n)
	}
	return st, err
}

// interrupted is Run's check before each step. On a rank of a group spanning processes
// (Options.Group), each rank learns of a pause, stop or shutdown on its own, at another
// step; so the ranks MAX-reduce a stop flag first and all stop after the same step when
// any was asked to, returning context.Canceled: they can then commit that step together
// (Save), instead of losing the steps since the last checkpoint. One small collective per
// step. Elsewhere it is ctx's error (the in-process ranks share rank 0's ctx).
func (tr *Trainer) interrupted(ctx context.Context) error {
	if tr.dp == nil || tr.opts.Group == nil {
		return ctx.Err()
	}
	stop := []float32{0}
	if ctx.Err() != nil {
		stop[0] = 1
	}
	if err := tr.dp.group.AllReduce(context.Background(), stop, collective.Max); err != nil {
		return err
	}
	if stop[0] != 0 {
		return context.Canceled
	}
	return nil
}

// Save writes a checkpoint of the current step once, from rank 0, after every rank has
// finished the step with the same weights and optimizer state (checked by hash) and
// reported its data position; every rank then learns the name committed. It applies the
// retention policy (train.checkpoint.keep) and returns the checkpoint's name. The
// checkpoint is written when Save returns, also with train.checkpoint.async.
func (tr *Trainer) Save() (string, error) {
	name, err := tr.queueSave()
	if ferr := tr.flush(); err == nil {
		err = ferr
	}
	return name, err
}

// queueSave is Save, except that with train.checkpoint.async it returns once rank 0 has
// queued the checkpoint; Run flushes the queue before it returns.
func (tr *Trainer) queueSave() (string, error) {
	if tr.dp == nil {
		return tr.save()
	}
	return ranks(tr, (*Trainer).saveRank)
}

func (tr *Trainer) saveRank() (string, error) {
	if tr.train == nil {
		return "", errOpened
	}
	g := tr.dp.group
	st, err := json.Marshal(tr.train.State())
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, v := range []kernels.Buf[float32]{tr.Model.Params, tr.opt.M, tr.opt.V} {
		h.Write(kernels.Bytes(kernels.HostBuf(kernels.ToHost(tr.opts.Backend, v))).Host())
	}
	all, err := g.AllGather(context.Background(), h.Sum(st))
	if err != nil {
		return "", err
	}
	var first data.State
	for r, b := range all {
		if !bytes.Equal(b[len(b)-sha256.Size:], all[0][len(all[0])-sha256.Size:]) {
			return "", fmt.Errorf("data parallel: rank %d's weights or optimizer state differ from rank 0's at step %d; the replicas diverged", r, tr.step)
		}
		var s data.State
		if err := json.Unmarshal(b[:len(b)-sha256.Size], &s); err != nil {
			return "", fmt.Errorf("data parallel: rank %d's data position: %w", r, err)
		}
		if r == 0 {
			first = s
		} else if s != first {
			return "", fmt.Errorf("data parallel: rank %d is at data position %+v, rank 0 at %+v, at step %d", r, s, first, tr.step)
		}
	}
	tr.dp.state = first
	var name string
	if g.Rank() == 0 {
		if name, err = tr.save(); err != nil {
			name = ""
		}
	}
	names, gerr := g.AllGather(context.Background(), []byte(name))
	if err != nil || gerr != nil {
		return name, errors.Join(err, gerr)
	}
	if len(names[0]) == 0 {
		return "", fmt.Errorf("data parallel: rank 0 failed to write the checkpoint of step %d", tr.step)
	}
	return string(names[0]), nil
}

// dataStates are the data positions a checkpoint records. At a step boundary every rank,
// of any world size, is at the same sample (see data.Sampler), so one position is stored:
// the checkpoint is then the same whatever the world size, and resumes on any number of
// ranks in the same sample order. Save has checked that the ranks agree.
func (tr *Trainer) dataStates() []data.State {
	if tr.dp != nil {
		return []data.State{tr.dp.state}
	}
	return []data.State{tr.train.State()}
}

// dataState is where a rank continues from a checkpoint's data positions: one position,
// or one per rank as a checkpoint may list them, which must then agree.
func dataState(name string, states []data.State) (data.State, error) {
	if len(states) == 0 {
		return data.State{}, fmt.Errorf("checkpoint %s holds no data position", name)
	}
	for r, s := range states {
		if s != states[0] {
			return data.State{}, fmt.Errorf("checkpoint %s: rank %d's data position %+v differs from rank 0's %+v", name, r, s, states[0])
		}
	}
	return states[0], nil
}

// loadAll loads checkpoint name into every in-process rank.
func (tr *Trainer) loadAll(store checkpoint.Storage, name string) error {
	_, err := ranks(tr, func(t *Trainer) (struct{}, error) {
		return struct{}{}, t.load(store, name, t.configHash)
	})
	return err
}

// closeRanks closes the other in-process ranks and leaves the group it made.
func (tr *Trainer) closeRanks() error {
	if tr.dp == nil || tr.opts.Group != nil {
		return nil
	}
	var errs []error
	for _, s := range tr.dp.siblings {
		errs = append(errs, s.Close())
	}
	errs = append(errs, tr.dp.group.Close())
	return errors.Join(errs...)
}
