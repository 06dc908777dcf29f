package metap

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
)

// hashVersion starts the canonical encoding; change it when the encoding changes.
const hashVersion = "herd-metap-table/1"

// Hash is the hex sha256 of the table's canonical encoding: every field of every entry in
// order, strings length-prefixed, integers and float bit patterns as little-endian uint64.
// Checkpoints record it, so that a resume under a different table (another mode, base
// shape, learning rate or override) is refused rather than silently trained through.
// Equal tables hash equally on every machine; any changed bit changes the hash.
func (t Table) Hash() string {
	h := sha256.New()
	var buf [8]byte
	u64 := func(v uint64) {
		binary.LittleEndian.PutUint64(buf[:], v)
		h.Write(buf[:])
	}
	str := func(s string) {
		u64(uint64(len(s)))
		h.Write([]byte(s))
	}
	f64 := func(v float64) { u64(math.Float64bits(v)) }

	str(hashVersion)
	str(t.Mode)
	f64(t.AttnScale)
	u64(uint64(len(t.Entries)))
	for _, e := range t.Entries {
		str(e.Name)
		str(string(e.Class))
		u64(uint64(len(e.Shape)))
		for _, d := range e.Shape {
			u64(uint64(d))
		}
		for _, v := range []float64{e.InitStd, e.LR, e.WeightDecay, e.Eps, e.Mult} {
			f64(v)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
