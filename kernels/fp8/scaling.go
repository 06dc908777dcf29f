package fp8

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels"
)

// Recipes and amax algorithms, as written in train.fp8.
const (
	// Delayed scaling (Transformer Engine's DelayedScaling): a tensor is quantized with a
	// scale computed from the amaxes of earlier steps, so quantizing needs one pass.
	Delayed = "delayed"
	// Current (just-in-time) scaling: the scale comes from the tensor's own amax, read in
	// a pass of its own just before quantizing.
	Current = "current"
	// Blockwise scaling (DeepSeek-V3's fine-grained quantization, Transformer Engine's
	// Float8BlockScaling): a Linear's activations and gradients get a just-in-time scale per
	// 1×TileSize tile along each GEMM's reduction dimension, its weight one per
	// TileSize×TileSize block. Nothing carries over from step to step.
	Blockwise = "blockwise"

	AmaxMax        = "max"         // delayed: the largest amax in the history window
	AmaxMostRecent = "most_recent" // delayed: the amax of the step just finished
)

// Config is the scaling recipe. Its keys mirror train.fp8 of the run config.
type Config struct {
	Recipe  string // Delayed, Current or Blockwise
	History int    // delayed: amaxes kept per tensor, the current step's included; >= 1
	Amax    string // delayed: AmaxMax or AmaxMostRecent; "" means AmaxMax
	Margin  int    // scale = (fp8_max / amax) / 2^margin; >= 0 leaves headroom for growth
	Pow2    bool   // round every scale down to a power of two, so scaling is exact
	// GradFP32 keeps the output gradients in float32 in both backward GEMMs, as Transformer
	// Engine's override_linear_precision does for dgrad and wgrad: per-tensor E5M2
	// gradients are the largest FP8 error in the backward (docs/fp8.md, the parity runs).
	// Their amax is still recorded, so Check still stops a step whose gradients overflowed.
	GradFP32 bool
	// GradE4M3 quantizes the gradients to E4M3 instead of E5M2 (Transformer Engine's
	// Format.E4M3 instead of HYBRID): with per-tile scales the gradients need E4M3's
	// precision more than E5M2's range, which is why DeepSeek-V3 uses E4M3 everywhere.
	GradE4M3 bool
}

// Validate reports the first bad key as a user error located at its key path.
func (c Config) Validate() error {
	switch c.Recipe {
	case Delayed, Current, Blockwise:
	default:
		return usererr.New("train.fp8.recipe", "unknown recipe %q; allowed: delayed, current, blockwise", c.Recipe)
	}
	if c.History < 1 {
		return usererr.New("train.fp8.history", "must be a positive integer, got %d", c.History)
	}
	switch c.Amax {
	case "", AmaxMax, AmaxMostRecent:
	default:
		return usererr.New("train.fp8.amax", "unknown amax algorithm %q; allowed: max, most_recent", c.Amax)
	}
	if c.Margin < 0 {
		return usererr.New("train.fp8.margin", "must be at least 0, got %d", c.Margin)
	}
	return nil
}

// Scaler is one tensor's scaling state: its format, its current scale, and the amaxes that
// will set the next one. Quantizing records the tensor's amax; Scaling.Update turns the
// recorded amaxes into new scales once per optimizer step.
type Scaler struct {
	name   string
	format Format
	owner  *Scaling
	scale  float32
	// ready: delayed scaling has set the scale from a real amax. Before that (the first
	// step, or while the tensor was all zeros) the tensor is scaled just in time: the
	// initial scale of 1 would flush most E5M2 gradients (~1e-6) below 2^-16 to zero.
	ready   bool
	amax    float32   // largest |x| quantized since the last Update (NaN if any was NaN)
	last    float32   // the amax of the step the last Update ended
	history []float32 // delayed: the last History step amaxes, oldest first
}

// Name is the tensor's name in the scaling state.
func (s *Scaler) Name() string { return s.name }

// Format is the FP8 format this tensor is quantized to.
func (s *Scaler) Format() Format { return s.format }

// Scale is the current scale: set by the last Update (delayed) or the last quantization
// (current); 1 with the blockwise recipe, whose scales belong to tiles and are not kept.
func (s *Scaler) Scale() float32 { return s.scale }

// Quantize writes dst[i] = Encode(src[i]·scale, SatFinite) with this tensor's scale,
// records src's amax, and returns 1/scale: src[i] ≈ Decode(dst[i])·(1/scale). With the
// blockwise recipe the scale is src's own, just in time, as with current scaling: only a
// Linear quantizes tile by tile.
func (s *Scaler) Quantize(dst kernels.Buf[uint8], src kernels.Buf[float32]) (scaleInv float32) {
	return s.quantize(dst, kernels.Buf[float32]{}, src)
}

// quantize is Quantize writing codes, the decoded (unscaled) values, or both (an empty
// buffer is not written). The amaxes come back from the backend as host scalars: the
// read-backs of the amax history.
func (s *Scaler) quantize(codes kernels.Buf[uint8], vals, src kernels.Buf[float32]) float32 {
	cfg, frozen, be := &s.owner.cfg, s.owner.frozen, s.owner.be
	scale := s.scale
	if cfg.Recipe != Delayed || !s.ready {
		scale = kernels.FP8Scale(be.Amax(src), s.scale, s.format, cfg.Margin, cfg.Pow2)
		if cfg.Recipe == Current && !frozen {
			s.scale = scale
		}
	}
	amax := be.Quantize(codes, vals, src, scale, s.format)
	if !frozen {
		s.amax = maxAmax(s.amax, amax)
	}
	return 1 / scale
}

// quantizeTiles runs q (its format, margin and pow2 filled in from this tensor and its
// recipe) and records the tensor's amax.
func (s *Scaler) quantizeTiles(q kernels.TileQuant) {
	q.Format, q.Margin, q.Pow2 = s.format, s.owner.cfg.Margin, s.owner.cfg.Pow2
	amax := s.owner.be.QuantizeTiles(q)
	if !s.owner.frozen {
		s.amax = maxAmax(s.amax, amax)
	}
}

// observe records src's amax, as quantizing it would, without quantizing it.
func (s *Scaler) observe(src kernels.Buf[float32]) {
	if !s.owner.frozen {
		s.amax = maxAmax(s.amax, s.owner.be.Amax(src))
	}
}

// maxAmax is max for amaxes that keeps NaN (see kernels.Backend's Amax).
func maxAmax(a, b float32) float32 {
	return math.Float32frombits(max(math.Float32bits(a), math.Float32bits(b)))
}

// update ends a step for this tensor, with its amax already reduced across ranks.
func (s *Scaler) update() {
	cfg := &s.owner.cfg
	a := s.amax
	s.amax, s.last = 0, a
	if cfg.Recipe != Delayed {
		return
	}
	copy(s.history, s.history[1:])
	s.history[len(s.history)-1] = a
	if cfg.Amax != AmaxMostRecent {
		for _, h := range s.history {
			a = maxAmax(a, h)
		}
	}
	if a > 0 && a <= math.MaxFloat32 {
		s.scale = kernels.FP8Scale(a, s.scale, s.format, cfg.Margin, cfg.Pow2)
		s.ready = true
	}
}

// Scaling is the FP8 scaling state of one model replica: a Scaler per FP8 tensor, in the
// order they were made, and the Linears that use them. It is saved in checkpoints (State)
// so that a resumed run quantizes exactly as an uninterrupted one.
//
// The Linears of one Scaling share a workspace for decoded operands: run them one at a
// time (each GEMM is parallel inside the backend).
type Scaling struct {
	cfg     Config
	be      kernels.Backend[float32]
	scalers []*Scaler
	names   map[string]bool
	reduce  func(amax []float32) error
	frozen  bool
	ws      [2]store[float32]
	// xv is the FP8 input whose values workspace slot 0 holds (decoded, unscaled), or nil:
	// linears sharing an input run one after another and find it there.
	xv   *tensor
	amax []float32 // the step's amaxes handed to reduce, kept from step to step
	// gen counts the events after which weights or scales may have changed (Update,
	// Restore, SetFrozen): a Linear reuses its weight's FP8 copy while gen is unchanged.
	gen uint64
}

// NewScaling returns an empty scaling state for recipe cfg whose GEMMs run on be.
func NewScaling(cfg Config, be kernels.Backend[float32]) (*Scaling, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Scaling{cfg: cfg, be: be, names: map[string]bool{}}, nil
}

// Scaler registers a tensor quantized to format f. Names are unique: they key the state.
func (s *Scaling) Scaler(name string, f Format) *Scaler {
	if s.names[name] {
		panic(fmt.Sprintf("fp8: scaler %q registered twice", name))
	}
	s.names[name] = true
	sc := &Scaler{name: name, format: f, owner: s, scale: 1}
	if s.cfg.Recipe == Delayed {
		sc.history = make([]float32, s.cfg.History)
	}
	s.scalers = append(s.scalers, sc)
	return sc
}

// SetFrozen freezes or thaws the scaling state. While frozen, quantizing uses the
// scales as they are but records no amax and sets no scale, so that an evaluation on
// held-out data runs on the training scales without steering them.
func (s *Scaling) SetFrozen(frozen bool) { s.frozen, s.gen = frozen, s.gen+1 }

// SetReduce installs the hook that MAX-reduces amaxes across data-parallel ranks before
// Update turns them into scales, so that every rank computes the same scales. It gets
// every tensor's amax of the step, in registration order (the same on every rank, as
// every rank builds the same model), and must replace each with the maximum over ranks;
// a NaN on any rank must stay NaN.
func (s *Scaling) SetReduce(fn func(amax []float32) error) { s.reduce = fn }

// Update ends an optimizer step: with delayed scaling, it reduces the step's amaxes
// across ranks, pushes them into each tensor's history and sets the scales for the next
// step; with current and blockwise scaling it only clears the step's amaxes. Either way the Linears
// quantize their weights afresh in the next Forward. Call it once per optimizer step,
// after the last backward of the step and the weight update.
func (s *Scaling) Update() error {
	s.gen++
	if s.cfg.Recipe == Delayed && s.reduce != nil {
		if len(s.amax) != len(s.scalers) {
			s.amax = make([]float32, len(s.scalers))
		}
		amax := s.amax
		for i, sc := range s.scalers {
			amax[i] = sc.amax
		}
		if err := s.reduce(amax); err != nil {
			return fmt.Errorf("fp8: amax reduction: %w", err)
		}
		for i, sc := range s.scalers {
			sc.amax = amax[i]
		}
	}
	for _, sc := range s.scalers {
		sc.update()
	}
	return nil
}

// Summary describes the state after the last Update in three numbers, for a run's
// metrics history: amax is the largest amax of any tensor in the step that Update ended
// and, with delayed scaling, in its history (what the next scales come from); scaleMin
// and scaleMax are the range of the current scales (all 1 with the blockwise recipe,
// whose scales belong to tiles). All three are NaN when no tensor is registered.
func (s *Scaling) Summary() (amax, scaleMin, scaleMax float64) {
	if len(s.scalers) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	var a float32
	scaleMin, scaleMax = math.Inf(1), math.Inf(-1)
	for _, sc := range s.scalers {
		a = maxAmax(a, sc.last)
		for _, h := range sc.history {
			a = maxAmax(a, h)
		}
		scaleMin, scaleMax = min(scaleMin, float64(sc.scale)), max(scaleMax, float64(sc.scale))
	}
	return float64(a), scaleMin, scaleMax
}

// ErrNonFinite says that a tensor quantized in this step held Inf or NaN.
var ErrNonFinite = errors.New("Inf or NaN in an FP8 tensor")

// Check reports, as an error wrapping ErrNonFinite that names the first such tensor,
// whether any tensor quantized since the last Update held Inf or NaN. Saturation turns
// an Inf into ±max, so without this check a run that diverges inside a linear layer could
// go on with finite losses; the trainer calls it before the optimizer step and stops as
// it does on a non-finite loss.
func (s *Scaling) Check() error {
	for _, sc := range s.scalers {
		if !(sc.amax <= math.MaxFloat32) {
			return fmt.Errorf("fp8: %s: %w (amax %g)", sc.name, ErrNonFinite, sc.amax)
		}
	}
	return nil
}

// State is the saved form of a Scaling: JSON in the checkpoint's state file.
type State struct {
	Recipe  string        `json:"recipe"`
	History int           `json:"history"`
	Tensors []TensorState `json:"tensors"`
}

// TensorState is one Scaler's saved state.
type TensorState struct {
	Name    string    `json:"name"`
	Format  string    `json:"format"`
	Scale   Float32   `json:"scale"`
	Ready   bool      `json:"ready"`             // delayed: the scale came from an amax history
	Amax    Float32   `json:"amax"`              // amax recorded since the last Update
	History []Float32 `json:"history,omitempty"` // delayed: oldest first
}

// State returns a copy of the scaling state.
func (s *Scaling) State() State {
	st := State{Recipe: s.cfg.Recipe, History: s.cfg.History}
	for _, sc := range s.scalers {
		h := make([]Float32, len(sc.history))
		for i, v := range sc.history {
			h[i] = Float32(v)
		}
		st.Tensors = append(st.Tensors, TensorState{
			Name: sc.name, Format: sc.format.String(), Scale: Float32(sc.scale),
			Ready: sc.ready, Amax: Float32(sc.amax), History: h,
		})
	}
	return st
}

// Restore sets the state of every registered Scaler from st, which must hold exactly the
// registered tensors, written with the same recipe and history length. Call it after the
// model has made all its Linears. where locates st for error messages (the state file).
// On error nothing is changed.
func (s *Scaling) Restore(st State, where string) error {
	if st.Recipe != s.cfg.Recipe || (s.cfg.Recipe == Delayed && st.History != s.cfg.History) {
		return usererr.New(where, "FP8 scaling state was saved with recipe %s, history %d; the config has recipe %s, history %d: resume with the same train.fp8 settings",
			st.Recipe, st.History, s.cfg.Recipe, s.cfg.History)
	}
	if len(st.Tensors) != len(s.scalers) {
		return usererr.New(where, "FP8 scaling state has %d tensors, the model has %d: resume with the same model", len(st.Tensors), len(s.scalers))
	}
	for i, t := range st.Tensors {
		sc := s.scalers[i]
		bad := func(what string, args ...any) error {
			return usererr.New(fmt.Sprintf("%s: tensors[%d] (%s)", where, i, t.Name), what, args...)
		}
		if t.Name != sc.name || t.Format != sc.format.String() {
			return bad("expected %s in %v at this position: resume with the same model and precision", sc.name, sc.format)
		}
		if v := float32(t.Scale); !(v >= kernels.FP8MinScale && v <= kernels.FP8MaxScale) {
			return bad("scale %g outside [2^-126, 2^126]: the checkpoint is corrupt", v)
		}
		if len(t.History) != len(sc.history) {
			return bad("history has %d entries, want %d: the checkpoint is corrupt", len(t.History), len(sc.history))
		}
	}
	s.gen++
	for i, t := range st.Tensors {
		sc := s.scalers[i]
		sc.scale, sc.ready, sc.amax = float32(t.Scale), t.Ready, float32(t.Amax)
		for j, v := range t.History {
			sc.history[j] = float32(v)
		}
	}
	return nil
}

// Float32 is a float32 that survives JSON exactly: finite values as the shortest decimal
// that reads back to the same float32, NaN and ±Inf (which JSON numbers cannot hold) as
// the strings "NaN", "+Inf" and "-Inf". A NaN amax is what tells a resumed run that the
// last step overflowed.
type Float32 float32

// MarshalJSON implements json.Marshaler.
func (f Float32) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsNaN(v):
		return []byte(`"NaN"`), nil
	case math.IsInf(v, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Inf"`), nil
	}
	return strconv.AppendFloat(nil, v, 'g', -1, 32), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *Float32) UnmarshalJSON(b []byte) error {
	s := string(b)
	switch s {
	case `"NaN"`:
		*f = Float32(math.NaN())
		return nil
	case `"+Inf"`:
		*f = Float32(math.Inf(1))
		return nil
	case `"-Inf"`:
		*f = Float32(math.Inf(-1))
		return nil
	}
	v, err := strconv.ParseFloat(s, 32)
	if err != nil {
		return fmt.Errorf("fp8: %s is not a float32: want a number, \"NaN\", \"+Inf\" or \"-Inf\"", s)
	}
	*f = Float32(v)
	return nil
}
