package config

import (
	"fmt"

	"github.com/herdml/herd/internal/sysmem"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels/device"
	"github.com/herdml/herd/trainer/model"
)

// RunPlan is what a run costs: the model's plan for this run's micro-batch, and the
// totals over the run.
type RunPlan struct {
	model.Plan
	Ranks         int     `json:"ranks"`           // data-parallel ranks; memory figures are per rank
	MicroBatch    int     `json:"micro_batch"`     // sequences per rank per forward/backward; sizes the activations
	TokensPerStep int64   `json:"tokens_per_step"` // global_batch × seq_len
	TrainFLOPs    float64 `json:"train_flops"`     // flops_per_token × tokens_per_step × steps
	Device        Device  `json:"memory_per_device"`
}

// Device is the memory of the device a rank trains on. Data parallelism replicates the
// model, so each rank's device holds a whole replica: the memory per rank (weights,
// gradients, optimizer moments, activations; FP8 keeps its master copies in FP32, so the
// figure is the same for both precisions). On a GPU every rank has a device of its own;
// the CPU is one device, which the ranks that `herd train` runs in one process share.
type Device struct {
	Name    string `json:"device"`  // train.device, with cuda written cuda:0
	Bytes   int64  `json:"bytes"`   // one rank's replica
	Ranks   int    `json:"ranks"`   // ranks on one such device: 1 on a GPU, parallel.data on the CPU in one process
	Devices int    `json:"devices"` // such devices the run needs: one per rank on GPUs, one CPU
}

// Plan plans r; r must be valid.
func (r Run) Plan() RunPlan {
	lay, err := r.Layout()
	if err != nil {
		panic("config: Plan of an invalid run: " + err.Error())
	}
	p := RunPlan{
		Plan:          model.NewPlanFor(r.Model, lay, r.Train.MicroBatch),
		Ranks:         r.Parallel.Data,
		MicroBatch:    r.Train.MicroBatch,
		TokensPerStep: int64(r.Train.GlobalBatch) * int64(r.Model.SeqLen),
	}
	p.TrainFLOPs = p.FLOPsPerToken * float64(p.TokensPerStep) * float64(r.Train.Steps)
	p.Device = r.device(p.Memory.Total)
	return p
}

// device places the ranks of r, each holding replica bytes, on train.device's devices.
func (r Run) device(replica int64) Device {
	spec, err := device.Parse(r.Train.Device)
	if err != nil {
		panic("config: Plan of an invalid run: " + err.Error())
	}
	d := Device{Name: spec.String(), Bytes: replica, Ranks: 1, Devices: r.Parallel.Data}
	if !spec.CUDA {
		d.Ranks, d.Devices = r.Parallel.Data, 1
	}
	return d
}

// CheckMemory refuses to train ranks ranks of r in one process when their plan needs more
// memory than lim allows: a user error with the estimate, the limit and what sets it, so
// that an oversized run stops before it allocates rather than dying of it. An unknown
// limit (lim.Bytes 0) lets everything through. The plan counts the model's buffers, which
// dominate; the Go runtime and the data pipeline come on top.
func (r Run) CheckMemory(ranks int, lim sysmem.Limit) error {
	per := r.Plan().Memory.Total
	if lim.Bytes <= 0 || float64(per)*float64(ranks) <= float64(lim.Bytes) {
		return nil
	}
	need := sysmem.Format(per) + " of memory per rank"
	if ranks > 1 {
		need = fmt.Sprintf("%d ranks × %s", ranks, need)
	}
	return usererr.New("run "+r.Name, "needs %s (weights, gradients, optimizer state and activations: `herd plan` itemises them), "+
		"more than the %s this process may use (limit set by %s); reduce the model, model.seq_len or train.micro_batch, or raise the limit",
		need, sysmem.Format(lim.Bytes), lim.Source)
}
