package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// Hash identifies the training trajectory this config produces: a checkpoint records it,
// and resuming with a config of another hash is refused. It covers every key that changes
// the weights and leaves out those that only say where and how often to write or look:
// name, data paths (the data source checks its own identity in its saved state),
// train.checkpoint, train.eval, parallel.data (changing the number of ranks on resume
// keeps the same sample order) and train.device (a run may resume on another device; the
// backends agree within the conformance suite's tolerances, bit for bit only on the same
// one). The preset name is left out too; its values are in. train.device is encoded only
// when set, and finetune only with LoRA adapters (rank > 0), so that the hashes of the
// configs before them existed stay the same.
//
// The hash is the sha256 of the config's JSON encoding, which lists fields in declaration
// order and prints floats in their shortest exact form, so it is stable across runs and
// machines. Adding a key to Run changes every hash; say so when it happens.
func (r Run) Hash() string {
	r.Name = ""
	r.Model.Preset = ""
	r.Data.Train, r.Data.Eval = "", ""
	r.Train.Checkpoint = Checkpoint{}
	r.Train.Eval = Eval{}
	r.Parallel = Parallel{}
	r.Train.Device = ""
	if r.Finetune.LoRA.Rank == 0 {
		r.Finetune = Finetune{} // no adapters: its other keys do nothing, and configs before it keep their hash
	}
	b, err := json.Marshal(r)
	if err != nil {
		panic("config: Run cannot fail to encode: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
