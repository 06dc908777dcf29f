package trainer

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/model"
	"github.com/herdml/herd/trainer/pretrained"
)

// A LoRA run's checkpoints hold its adapters and not its frozen base, which can be many
// times larger: the base is init.from's, named in the checkpoint's state by path and by the
// sha256 of its weights. Every load (resume, eval, export, generate) reads the base from
// init.from again and refuses one whose weights hash otherwise.

// loadBase reads init.from's weights into the model's base tensors (all but the adapters)
// and, in a LoRA run, records their hash.
func (tr *Trainer) loadBase() error {
	h := tr.toHost()
	base := tr.baseTensors(h.params)
	if err := pretrained.Load(tr.Cfg.Init.From, base); err != nil {
		return loraSource(tr.Cfg.Init.From, err)
	}
	tr.upload(h)
	if len(tr.Model.Layout.Adapters) > 0 {
		tr.baseHash = hashTensors(base)
	}
	return nil
}

// loraSource is err, or, when from is a LoRA run's checkpoint (which holds no base), a user
// error that says how to start from it.
func loraSource(from string, err error) error {
	store, name, _, ferr := checkpoint.Find(from)
	if ferr != nil {
		return err
	}
	if st, serr := checkpoint.ReadState(store, name); serr == nil && st.BaseSHA256 != "" {
		return usererr.New(from, "init.from: a LoRA checkpoint holds its adapters, not its base (%s): export it with herd export --merge and start from that folder", st.Base)
	}
	return err
}

// baseTensors views the base tensors of params (model.NewLayout's, before the adapters).
func (tr *Trainer) baseTensors(params []float32) []checkpoint.Tensor {
	var out []checkpoint.Tensor
	for _, t := range tr.Model.Layout.Tensors {
		if t.Offset >= tr.Model.Layout.BaseTotal() {
			break
		}
		out = append(out, checkpoint.Tensor{Name: t.Name, Shape: t.Shape, Data: params[t.Offset : t.Offset+t.Size()]})
	}
	return out
}

// hashTensors is the hex sha256 of the tensors' float32 values, little-endian, in order.
func hashTensors(ts []checkpoint.Tensor) string {
	h := sha256.New()
	buf := make([]byte, 0, 1<<16)
	for _, t := range ts {
		for _, v := range t.Data {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
			if len(buf) == cap(buf) {
				h.Write(buf)
				buf = buf[:0]
			}
		}
	}
	h.Write(buf)
	return hex.EncodeToString(h.Sum(nil))
}

// checkBase refuses checkpoint name of a LoRA run when the base loaded now is not the one
// it was trained on: the adapters would be applied to other weights.
func (tr *Trainer) checkBase(store checkpoint.Storage, name string, st checkpoint.State) error {
	if st.BaseSHA256 == tr.baseHash {
		return nil
	}
	return usererr.New(checkpoint.Where(store, name, checkpoint.StateFile),
		"the adapters were trained on base %s (weights sha256 %.16s), but init.from %s now has weights sha256 %.16s: point init.from at the base they were trained on",
		st.Base, st.BaseSHA256, tr.Cfg.Init.From, tr.baseHash)
}

// Merged returns the model's weights with the LoRA adapters folded in (model.Merge), as
// checkpoint tensors of the base layout, on the host.
func (tr *Trainer) merged() []checkpoint.Tensor {
	lay := tr.Model.Layout
	w := model.Merge(lay, tr.toHost().params)
	return tr.baseTensors(w)
}
