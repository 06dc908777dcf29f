package backendtest

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/device"
)

// recorder is a TB that records which subtests failed and what they said, so that a test
// can run the suite on a broken backend and look at its verdict.
type recorder struct {
	name string
	log  *record
}

type record struct {
	failed map[string][]string // subtest name -> its messages
}

func newRecorder() *recorder { return &recorder{log: &record{failed: map[string][]string{}}} }

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.log.failed[r.name] = append(r.log.failed[r.name], fmt.Sprintf(format, args...))
}

func (r *recorder) Run(name string, f func(*recorder)) bool {
	sub := &recorder{name: strings.TrimPrefix(r.name+"/"+name, "/"), log: r.log}
	f(sub)
	return len(r.log.failed[sub.name]) == 0
}

// failures returns the names of the failed subtests, sorted.
func (r *recorder) failures() []string {
	var s []string
	for name := range r.log.failed {
		s = append(s, name)
	}
	slices.Sort(s)
	return s
}

// TestCPUPasses: the unbroken CPU backend passes, through the recorder too (so that the
// tests below, which expect exactly one failing op, start from a clean verdict).
func TestCPUPasses(t *testing.T) {
	r := newRecorder()
	Run(r, device.CPU[float32]())
	for _, name := range r.failures() {
		t.Errorf("%s failed on the CPU backend: %s", name, r.log.failed[name][0])
	}
}

// TestSuiteBites breaks one op of the CPU backend at a time and checks that the suite
// fails that op, and only it.
func TestSuiteBites(t *testing.T) {
	cpu := device.CPU[float32]()
	for _, tc := range []struct {
		op string
		be kernels.Backend[float32]
	}{
		{"RoPE", ropeSwapped{cpu}},
		{"Attention", docMaskIgnored{cpu}},
		{"Embedding", imageRowsEmbedded{cpu}},
		{"Route", tiesToHigher{cpu}},
		{"AdamW", noWeightDecay{cpu}},
		{"Quantize", noSaturation{cpu}},
	} {
		t.Run(tc.op, func(t *testing.T) {
			r := newRecorder()
			Run(r, tc.be)
			if got := r.failures(); !slices.Equal(got, []string{tc.op}) {
				t.Errorf("failed subtests %v, want [%s]", got, tc.op)
			}
			for _, m := range r.log.failed[tc.op] {
				if !strings.HasPrefix(m, tc.op+" ") {
					t.Errorf("message %q does not name the op %s", m, tc.op)
				}
			}
		})
	}
}

// ropeSwapped pairs element j with j+D/2 (the "rotate half" layout) instead of 2j with
// 2j+1.
type ropeSwapped struct{ kernels.Backend[float32] }

func (b ropeSwapped) RoPE(x kernels.Buf[float32], pos kernels.Buf[int32], cos, sin kernels.Buf[float32], heads, d int) {
	xs, ps, cs, sn := x.Host(), pos.Host(), cos.Host(), sin.Host()
	half := d / 2
	for i, p := range ps {
		for h := range heads {
			row := xs[(i*heads+h)*d:]
			for j := range half {
				a, c, s := row[j], cs[int(p)*half+j], sn[int(p)*half+j]
				row[j], row[j+half] = a*c-row[j+half]*s, a*s+row[j+half]*c
			}
		}
	}
}

// docMaskIgnored attends across document boundaries.
type docMaskIgnored struct{ kernels.Backend[float32] }

func (b docMaskIgnored) Attention(out, lse, q, k, v kernels.Buf[float32], doc kernels.Buf[int32], bs, t, h, kv, d int, scale float32) {
	b.Backend.Attention(out, lse, q, k, v, kernels.HostBuf(make([]int32, doc.Len())), bs, t, h, kv, d, scale)
}

// imageRowsEmbedded embeds rows of id -1 as token 0.
type imageRowsEmbedded struct{ kernels.Backend[float32] }

func (b imageRowsEmbedded) Embedding(out, table kernels.Buf[float32], ids kernels.Buf[int32], c int, scale float32) {
	all := slices.Clone(ids.Host())
	for i, id := range all {
		all[i] = max(id, 0)
	}
	b.Backend.Embedding(out, table, kernels.HostBuf(all), c, scale)
}

// tiesToHigher breaks ties between equal router logits towards the higher expert index,
// by raising each logit that equals an earlier one of its row by one ulp.
type tiesToHigher struct{ kernels.Backend[float32] }

func (b tiesToHigher) Route(probs, gate, rowGate kernels.Buf[float32], slotRow, rowTok kernels.Buf[int32], counts []int, r kernels.Buf[float32], n, e, k int) {
	orig := r.Host()
	rs := slices.Clone(orig)
	for t := range n {
		row, was := rs[t*e:t*e+e], orig[t*e:t*e+e]
		for x := range row {
			for y := range x {
				if was[y] == was[x] {
					row[x] = math.Nextafter32(row[x], float32(math.Inf(1)))
				}
			}
		}
	}
	b.Backend.Route(probs, gate, rowGate, slotRow, rowTok, counts, kernels.HostBuf(rs), n, e, k)
}

// noWeightDecay ignores the decoupled weight decay.
type noWeightDecay struct{ kernels.Backend[float32] }

func (b noWeightDecay) AdamW(p, g kernels.Buf[float32], m, v kernels.Buf[float32], spans []kernels.Span, coeffs []kernels.AdamWCoeffs) {
	c := slices.Clone(coeffs)
	for i := range c {
		c[i].Decay = 1
	}
	b.Backend.AdamW(p, g, m, v, spans, c)
}

// noSaturation turns values beyond the format's range into its overflow code (NaN for
// E4M3, ±Inf for E5M2) instead of clamping them to ±max.
type noSaturation struct{ kernels.Backend[float32] }

func (b noSaturation) Quantize(codes kernels.Buf[uint8], vals, src kernels.Buf[float32], scale float32, f kernels.FP8) float32 {
	amax := b.Backend.Quantize(codes, vals, src, scale, f)
	over := uint8(0x7F)
	if f == kernels.E5M2 {
		over = 0x7C
	}
	for i, x := range src.Host() {
		if y := float64(x * scale); math.Abs(y) > fp8Max(f) {
			c := over
			if y < 0 {
				c |= 0x80
			}
			if codes.Len() > 0 {
				codes.Host()[i] = c
			}
			if vals.Len() > 0 {
				vals.Host()[i] = float32(fp8Value(f, c))
			}
		}
	}
	return amax
}

// TestEveryOpIsChecked: the suite has a check for every method of kernels.Backend
// (Memory's byte methods, Name and Device aside), so that an op added to the interface
// fails here until the suite covers it.
func TestEveryOpIsChecked(t *testing.T) {
	checked := map[string]bool{}
	for _, c := range checks[float32]() {
		checked[c.name] = true
	}
	skip := map[string]bool{"Name": true, "Device": true}
	mem := reflect.TypeFor[kernels.Memory]()
	for i := range mem.NumMethod() {
		skip[mem.Method(i).Name] = true
	}
	be := reflect.TypeFor[kernels.Backend[float32]]()
	for i := range be.NumMethod() {
		if name := be.Method(i).Name; !skip[name] && !checked[name] {
			t.Errorf("kernels.Backend.%s has no check", name)
		}
	}
}

// TestEveryOpHasATolerance: the tolerance table and the checks name the same ops.
func TestEveryOpHasATolerance(t *testing.T) {
	for _, c := range checks[float32]() {
		if _, ok := tolerances[c.name]; !ok && c.name != "Memory" {
			t.Errorf("no tolerance for %s", c.name)
		}
	}
	if len(tolerances) != len(checks[float32]())-1 {
		t.Errorf("%d tolerances for %d ops", len(tolerances), len(checks[float32]())-1)
	}
}

// TestFP8Reference checks the suite's FP8 codec, a search for the nearest value, against
// kernels.FP8's bit-level conversion, on every code's value and midpoints and on float32
// values spread over the whole range: two independent derivations of one specification.
func TestFP8Reference(t *testing.T) {
	for _, f := range fp8Formats {
		for c := range 256 {
			if got, want := fp8Value(f, uint8(c)), float64(f.Decode(uint8(c))); got != want && !(got != got && want != want) {
				t.Errorf("%v code %#x: value %v, kernels.FP8.Decode %v", f, c, got, want)
			}
		}
		xs := fp8Ties(f)
		for b := uint32(0); b < 1<<32-1<<19; b += 1<<19 - 1 { // every exponent, many mantissas
			xs = append(xs, math.Float32frombits(b))
		}
		for _, x := range xs {
			if got, want := fp8Encode(f, x), f.Encode(x, kernels.SatFinite); got != want {
				t.Errorf("%v: code of %v (%#08x) is %#x, kernels.FP8.Encode gives %#x", f, x, math.Float32bits(x), got, want)
			}
		}
	}
}
