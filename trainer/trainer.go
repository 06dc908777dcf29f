// Package trainer is herd's step loop: it builds the model, the MetaP table, the data
// sources and the optimizer from a run configuration, then runs optimizer steps (gradient
// accumulation over micro-batches, clipping, schedule, AdamW), evaluates, and saves and
// resumes checkpoints so that a resumed run is bit-identical to one that never stopped.
//
// It knows nothing about Temporal: the CLI calls it directly, and the orchestrator calls
// the same code from an activity. Run is cancellable between steps and reports every step
// through Options.Progress, which is where an activity heartbeats.
package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/internal/outdir"
	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/internal/sysmem"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/device"
	"github.com/herdml/herd/kernels/fp8"
	"github.com/herdml/herd/metap"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/collective"
	"github.com/herdml/herd/trainer/config"
	"github.com/herdml/herd/trainer/model"
	"github.com/herdml/herd/trainer/optim"
	"github.com/herdml/herd/trainer/pretrained"
)

// Options are the parts of a run that are not in its configuration.
type Options struct {
	// OutDir is the checkpoint root; checkpoints go to OutDir/<run name>/step-NNNNNNNN.
	// Empty means train.checkpoint.dir.
	OutDir string
	// Backend runs the kernels; nil means the one train.device names (kernels/device.Open),
	// which the in-process ranks of parallel.data then share.
	Backend kernels.Backend[float32]
	// Progress, if set, is called after every step of Run, on the caller's goroutine.
	Progress func(Stats)
	// EvalProgress, if set, is called after every micro-batch of Eval with the result so
	// far and the number of batches asked for, on the caller's goroutine: a long
	// evaluation (`herd eval`) shows where it is.
	EvalProgress func(sofar EvalResult, batches int)
	// BeforeStep, if set, is called by Run before each step it trains, with Run's context,
	// the run's name and the steps done so far; Run checks its context for a stop once it
	// returns. Tests use it to hold a run at a chosen step until they release it (a
	// pause, stop or cancellation must end the hold) or to slow every step down.
	BeforeStep func(ctx context.Context, run string, done int64)
	// Warn, if set, receives warnings (e.g. a corrupt checkpoint skipped on resume).
	Warn func(string)
	// Train and Eval replace the sources the configuration names (nil = open them from
	// data.train and data.eval). Their batch shape must match the configuration's.
	Train, Eval data.Source
	// Group, if set, makes this trainer rank Group.Rank() of a data-parallel group that
	// spans processes or hosts (Group.World() must equal parallel.data): it reads that
	// rank's share of the data and joins every step's all-reduce and every checkpoint. Nil
	// with parallel.data > 1 runs every rank in this process. The caller closes it.
	Group *collective.Group
	// Changes is the run's lineage as its history records it (what `herd resume` changed):
	// Resume accepts a checkpoint whose config differs from this one in those keys and to
	// those values only (checkpoint.Compatible), and the checkpoints it writes list them.
	Changes []config.Change
}

// Stats describe one optimizer step.
type Stats struct {
	Step       int64       // steps completed, this one included
	Steps      int         // train.steps: where the schedule ends
	Loss       float64     // mean cross-entropy over the step's micro-batches
	Aux        float64     // load-balancing loss (already times moe.aux_loss), same mean
	LR         float64     // train.optim.lr times the schedule: the base LR this step used
	GradNorm   float64     // global gradient norm before clipping
	Tokens     int64       // tokens this process's ranks processed in the step (all parallel.data ranks of herd train)
	TokensPerS float64     // Tokens over the step's wall time
	ExpertLoad [][]float64 // per MoE layer, each expert's share of routed slots, averaged over micro-batches; on one rank the trainer's, overwritten by the next Step
	Eval       *EvalResult // set when an evaluation ran after this step
	Checkpoint string      // set when a checkpoint was written after this step: its name
}

// EvalResult is the loss on held-out data.
type EvalResult struct {
	Loss         float64 // mean cross-entropy per trained-on token
	BitsPerByte  float64 // Loss / ln 2: byte-level tokens make one token one byte
	Tokens       float64 // tokens evaluated (Σ loss mask)
	Batches      int     // micro-batches evaluated
	StepsTrained int64   // optimizer steps the evaluated weights had
}

// Trainer holds a run's model, optimizer, data position and schedule.
type Trainer struct {
	Cfg   config.Run
	Model *model.Model[float32]
	Table metap.Table

	opts      Options
	opt       *optim.AdamW[float32]
	sched     optim.Schedule
	train     data.Source
	eval      data.Source
	evalStart data.State         // eval always reads the same batches, from here
	store     checkpoint.Storage // the run's checkpoints: a folder, or a bucket prefix (s3://)
	lock      *checkpoint.Lock   // held by the rank that owns a folder store (rank 0) from New to Close
	uploads   *uploader          // rank 0's background checkpoint writer (train.checkpoint.async); nil writes in the step loop
	rng       *rand.PCG          // the run's random stream; seeds init, and is checkpointed
	step      int64
	nMicro    int // micro-batches per optimizer step on this rank
	batch     data.Batch
	rank      int           // this trainer's rank of parallel.data
	acc       accumulator   // the step's micro-batch gradients (parallel.go)
	dp        *dataParallel // nil on one rank (parallel.go)

	fp8 *fp8.Scaling // nil in fp32

	expertLoad [][]float64 // the last step's Stats.ExpertLoad, zeroed and reused by the next

	hist      *runHistory // rank 0's metrics history, opened by Run (history.go); nil without one
	histTried bool        // Run has opened it, or failed to

	configJSON json.RawMessage
	lineage    []config.Change // the loaded checkpoint's lineage and what this config changed
	configHash string
	baseHash   string           // with LoRA adapters: the sha256 of the frozen base's weights (lora.go)
	dropKey    model.DropoutKey // the training forward's adapter dropout key (a field: steps allocate nothing)
}

// pcgStream is the second PCG word; fixed so that the seed alone decides the stream.
const pcgStream = 0x68657264 // "herd"

// New builds a trainer from a validated configuration: the model, initialised from the
// MetaP table; the optimizer with the table's per-tensor hyperparameters; and the data
// sources for rank 0 of parallel.data ranks. A run whose plan needs more memory than
// this process may use is refused before anything is allocated (config.Run.CheckMemory):
// all parallel.data ranks when they train in this process, one when opts.Group makes
// this one rank of a group. With init.from, the weights are the source's
// (trainer/pretrained): a model config that contradicts the source's, or a source that
// cannot be read, is a user error before anything is written. A checkpoint folder it cannot write is a user error here,
// before any step is trained. Rank 0 (a one-rank trainer, or rank 0 of Options.Group)
// locks the run's checkpoint folder (checkpoint.LockDir) and fails with a user error
// wrapping checkpoint.ErrLocked if another trainer holds it. Close releases the sources
// and the lock.
func New(cfg config.Run, opts Options) (*Trainer, error) {
	ranks := 1 // in this process
	if opts.Group == nil {
		ranks = cfg.Parallel.Data
	}
	if cfg.Init.From != "" {
		src, err := pretrained.ModelConfig(cfg.Init.From)
		if err != nil {
			return nil, err
		}
		if err := pretrained.Check(cfg.Model, src, cfg.Init.From); err != nil {
			return nil, err
		}
	}
	if err := cfg.CheckMemory(ranks, sysmem.Lookup()); err != nil {
		return nil, err
	}
	tr, err := build(cfg, opts)
	if err != nil {
		return nil, err
	}
	if cfg.Init.From != "" {
		if err := tr.loadBase(); err != nil {
			return nil, err
		}
	}
	if err := checkDest(tr.store); err != nil {
		return nil, err
	}
	if err := tr.joinGroup(); err != nil {
		return nil, err
	}
	if err := tr.openData(true); err != nil {
		return nil, err
	}
	if tr.rank == 0 {
		// Rank 0 owns the run's folder: it alone writes checkpoints, sets damaged ones
		// aside and applies retention. Other ranks only read it, maybe on other hosts.
		// Locking creates the folder, so it comes after the checks of the user's input.
		// A bucket has no lock: the workflow ID, the run's name, keeps one run writing it.
		if d, ok := tr.store.(checkpoint.Dir); ok {
			if tr.lock, err = checkpoint.LockDir(d.Root); err != nil {
				tr.Close()
				return nil, err
			}
		}
		if n := cfg.Train.Checkpoint.Async; n > 0 {
			tr.uploads = newUploader(n)
		}
	}
	if cfg.Parallel.Data > 1 && opts.Group == nil {
		if err := tr.startRanks(); err != nil {
			tr.Close()
			return nil, err
		}
	}
	if cfg.Init.From != "" && tr.dp != nil {
		// The other in-process ranks built their weights from the seed; they start from
		// the same pretrained ones.
		be, w := tr.opts.Backend, kernels.ToHost(tr.opts.Backend, tr.Model.Params)
		for _, sib := range tr.dp.siblings {
			kernels.Upload(be, sib.Model.Params, w)
			sib.baseHash = tr.baseHash
		}
	}
	return tr, nil
}

// build makes everything but the data sources.
func build(cfg config.Run, opts Options) (*Trainer, error) {
	cfg = withDevice(cfg)
	if opts.Backend == nil {
		be, err := device.Open(cfg.Train.Device)
		if err != nil {
			return nil, err
		}
		opts.Backend = be
	}
	if opts.OutDir == "" {
		opts.OutDir = cfg.Train.Checkpoint.Dir
	}
	tr := &Trainer{Cfg: cfg, opts: opts, sched: cfg.Train.LRSchedule(), rng: rand.NewPCG(cfg.Seed, pcgStream)}
	var err error
	if tr.store, err = checkpoint.OpenRoot(storage.Join(opts.OutDir, cfg.Name)); err != nil {
		return nil, err
	}
	world := cfg.Parallel.Data
	tr.nMicro = cfg.Train.GlobalBatch / (cfg.Train.MicroBatch * world)
	if tr.nMicro < 1 || cfg.Train.GlobalBatch%(cfg.Train.MicroBatch*world) != 0 {
		return nil, usererr.New("train.global_batch", "must be a multiple of micro_batch × parallel.data = %d, got %d",
			cfg.Train.MicroBatch*world, cfg.Train.GlobalBatch)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encoding the config: %w", err)
	}
	tr.configJSON, tr.configHash = js, cfg.Hash()

	lay, err := cfg.Layout()
	if err != nil {
		return nil, err
	}
	tr.Model = model.NewWithLayout[float32](cfg.Model, lay, opts.Backend, cfg.Train.MicroBatch)
	if err := tr.plan(); err != nil {
		return nil, err
	}
	if cfg.Train.Precision == "fp8" {
		if err := tr.attachFP8(); err != nil {
			return nil, err
		}
	}
	return tr, nil
}

// withDevice is cfg with train.device set when it is empty: a config decoded from JSON
// written before the key existed (a checkpoint's, a workflow's input), which trained on
// the CPU. The key is left out of the config hash, so such checkpoints still resume.
func withDevice(cfg config.Run) config.Run {
	if cfg.Train.Device == "" {
		cfg.Train.Device = config.Default().Train.Device
	}
	return cfg
}

// plan builds the MetaP table for this model and applies it: init std, forward
// multipliers, attention scale and the optimizer's per-tensor hyperparameters all come
// from the table and nowhere else.
func (tr *Trainer) plan() error {
	lay := tr.Model.Layout
	table, err := tr.Cfg.MetaPTable()
	if err != nil {
		return err
	}
	if len(table.Entries) != len(lay.Tensors) {
		return fmt.Errorf("metap table has %d entries for %d tensors", len(table.Entries), len(lay.Tensors))
	}
	byName := map[string]metap.Entry{}
	for _, e := range table.Entries {
		byName[e.Name] = e
	}
	var groups []optim.Group // the trainable tensors'
	for i, t := range lay.Tensors {
		e, ok := byName[t.Name]
		if !ok {
			return fmt.Errorf("metap table has no entry for %s", t.Name)
		}
		tr.Model.Mult[i] = float32(e.Mult)
		if !t.Frozen() {
			groups = append(groups, optim.Group{Name: t.Name, Offset: t.Grad, Param: t.Offset, Size: t.Size(), LR: e.LR, WeightDecay: e.WeightDecay, Eps: e.Eps})
		}
	}
	if table.AttnScale != 0 {
		tr.Model.AttnScale = float32(table.AttnScale)
	}
	tr.Table = table
	tr.Model.Init(tr.rng.Uint64(), func(t model.Tensor) float64 { return byName[t.Name].InitStd })
	betas := tr.Cfg.Train.Optim.Betas
	opt, err := optim.New(tr.opts.Backend, lay.Trainable, groups, betas[0], betas[1])
	if err != nil {
		return err
	}
	tr.opt = opt
	return nil
}

// openData opens the eval source and, if train is set, the training source, unless
// Options gave them.
func (tr *Trainer) openData(train bool) error {
	cfg := tr.Cfg
	tr.train, tr.eval = tr.opts.Train, tr.opts.Eval
	var err error
	if tr.train == nil && train {
		if tr.train, err = openSource(cfg, cfg.Data.Train, cfg.Train.GlobalBatch, tr.rank, cfg.Parallel.Data); err != nil {
			return err
		}
	}
	if tr.eval == nil && cfg.Data.Eval != "" && tr.rank == 0 { // the weights are replicated: rank 0 evaluates
		// Eval reads micro-batches on one process; its order never changes between evals.
		if tr.eval, err = openSource(cfg, cfg.Data.Eval, cfg.Train.MicroBatch, 0, 1); err != nil {
			return err
		}
	}
	if tr.eval != nil {
		tr.evalStart = tr.eval.State()
	}
	return nil
}

// localStep runs one optimizer step on this rank (Step runs it on every rank): nMicro
// forward/backward passes, each unit's gradient summed in the canonical tree and over the
// ranks, clipping, the schedule and AdamW.
func (tr *Trainer) localStep() (Stats, error) {
	start := time.Now()
	step := tr.step + 1
	m, be := tr.Model, tr.opts.Backend
	st := Stats{Step: step, Steps: tr.Cfg.Train.Steps, ExpertLoad: tr.expertLoad}
	if tr.train == nil {
		return st, errOpened
	}
	for _, l := range st.ExpertLoad {
		clear(l)
	}
	kernels.Zero(be, m.Grads)
	scale := 1 / float32(tr.nMicro*tr.Cfg.Parallel.Data) // 1/units of the global batch
	// One unit on one rank: its gradient is the step's, and the tree of one leaf is that
	// leaf, so the gradient stays where the backward put it: no copy out of the model, no
	// clearing, no copy back (three passes over the gradients, on one thread).
	direct := tr.nMicro == 1 && tr.dp == nil
	for i := range tr.nMicro {
		if err := tr.train.Next(&tr.batch); err != nil {
			return st, fmt.Errorf("step %d: reading micro-batch %d: %w", step, i, err)
		}
		// Adapter dropout draws its masks by the sequence's place in the step's global
		// batch, where rank r of W reads G/W sequences from r·G/W (data.Sampler): the same
		// masks on every world size.
		tr.dropKey = model.DropoutKey{Seed: tr.Cfg.Seed, Step: step,
			Sample: int64(tr.rank*(tr.Cfg.Train.GlobalBatch/tr.Cfg.Parallel.Data) + i*tr.Cfg.Train.MicroBatch)}
		m.SetDropout(&tr.dropKey)
		r := m.Forward(&tr.batch)
		m.SetDropout(nil)
		if math.IsNaN(r.Loss) || math.IsInf(r.Loss, 0) || math.IsNaN(r.Aux) || math.IsInf(r.Aux, 0) {
			return st, diverged(step, fmt.Sprintf("loss is %g (aux %g) in micro-batch %d", r.Loss, r.Aux, i))
		}
		m.Backward(scale)
		if !direct {
			tr.unitDone(i, r)
		}
		st.Loss += r.Loss / float64(tr.nMicro)
		st.Aux += r.Aux / float64(tr.nMicro)
		st.Tokens += int64(tr.batch.B * tr.batch.T)
		addLoad(&st.ExpertLoad, r.ExpertLoad, 1/float64(tr.nMicro))
	}
	tr.expertLoad = st.ExpertLoad
	if tr.fp8 != nil {
		if err := tr.fp8.Check(); err != nil {
			return st, diverged(step, err.Error())
		}
	}
	if !direct {
		if err := tr.reduce(&st); err != nil {
			return st, fmt.Errorf("step %d: %w", step, err)
		}
	}
	st.GradNorm = optim.GradNorm(be, m.Grads)
	if math.IsNaN(st.GradNorm) || math.IsInf(st.GradNorm, 0) {
		return st, diverged(step, fmt.Sprintf("gradient norm is %g", st.GradNorm))
	}
	f := tr.sched.Factor(int(step))
	st.LR = tr.Cfg.Train.Optim.LR * f
	// Clipping is folded into the update (one pass over the gradients fewer); m.Grads keep
	// their unclipped values.
	tr.opt.StepScaled(m.Params, m.Grads, f, optim.ClipFactor(st.GradNorm, tr.Cfg.Train.Optim.Clip))
	if tr.fp8 != nil {
		if err := tr.fp8.Update(); err != nil {
			return st, err
		}
	}
	tr.step = step
	st.TokensPerS = float64(st.Tokens) / time.Since(start).Seconds()
	return st, nil
}

// errOpened refuses to train or save a trainer that Open made: it has no training data
// and so no data position to continue from.
var errOpened = errors.New("trainer: opened for evaluation (Open) without training data; use New to train")

// diverged is the error of a step that went non-finite: the user's recipe is at fault
// (usually the learning rate), and retrying from the last checkpoint would diverge again.
func diverged(step int64, what string) error {
	return usererr.New(fmt.Sprintf("step %d", step), "training went non-finite: %s; no update was applied. Lower train.optim.lr, "+
		"lengthen train.schedule.warmup or set train.optim.clip, then resume from the last checkpoint", what)
}

// addLoad adds w·load into sum, allocating sum on first use.
func addLoad(sum *[][]float64, load [][]float64, w float64) {
	if *sum == nil && load != nil {
		*sum = make([][]float64, len(load))
		for i, l := range load {
			(*sum)[i] = make([]float64, len(l))
		}
	}
	for i, l := range load {
		for e, v := range l {
			(*sum)[i][e] += w * v
		}
	}
}

// Eval returns the loss over the first batches micro-batches of the eval data, the same
// batches every time so that evaluations are comparable. Without eval data it is a user
// error naming data.eval.
func (tr *Trainer) Eval(batches int) (EvalResult, error) {
	res := EvalResult{StepsTrained: tr.step}
	if tr.eval == nil {
		return res, usererr.New("data.eval", "no eval data; give a glob of held-out files")
	}
	if err := tr.eval.Restore(tr.evalStart); err != nil {
		return res, err
	}
	if tr.fp8 != nil {
		tr.fp8.SetFrozen(true)
		defer tr.fp8.SetFrozen(false)
	}
	var sum float64
	for i := range batches {
		if err := tr.eval.Next(&tr.batch); err != nil {
			return res, fmt.Errorf("eval batch %d: %w", i, err)
		}
		r := tr.Model.Forward(&tr.batch)
		sum += r.Loss * r.Tokens
		res.Tokens += r.Tokens
		res.Batches++
		if res.Tokens > 0 {
			res.Loss = sum / res.Tokens
		}
		res.BitsPerByte = res.Loss / math.Ln2
		if tr.opts.EvalProgress != nil {
			tr.opts.EvalProgress(res, batches)
		}
	}
	return res, nil
}

// Kernels names the kernels the steps run on, e.g. "cpu/avx512": the backend's choice for
// this machine's CPU (or HERD_KERNELS's), which herd train prints first.
func (tr *Trainer) Kernels() string { return tr.opts.Backend.Name() }

// StepCount is the number of optimizer steps completed.
func (tr *Trainer) StepCount() int64 { return tr.step }

// CheckpointDir is the folder that holds this run's checkpoints.
func (tr *Trainer) CheckpointDir() string { return checkpoint.Where(tr.store, "", "") }

// checkDest returns a user error naming the run's checkpoint folder or bucket prefix when
// herd cannot write there, before any step is trained.
func checkDest(s checkpoint.Storage) error {
	const what = "checkpoints (train.checkpoint.dir, or --out)"
	switch s := s.(type) {
	case checkpoint.Dir:
		return outdir.Check(s.Root, what)
	case checkpoint.Objects:
		if err := s.B.Probe(); err != nil {
			return usererr.New(s.String(), "cannot write %s here (%v); name a bucket prefix you can write to, with credentials and endpoint in the AWS environment (AWS_ENDPOINT_URL_S3, AWS_PROFILE, ...)", what, err)
		}
	}
	return nil
}
