package fp8

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/device"
)

// testBackend runs the tests' ops.
var testBackend = device.CPU[float32]()

// hb and hc are host slices as buffers of testBackend, a host backend.
func hb(s []float32) kernels.Buf[float32] { return kernels.HostBuf(s) }
func hc(s []uint8) kernels.Buf[uint8]     { return kernels.HostBuf(s) }

func newScaling(t *testing.T, cfg Config) *Scaling {
	t.Helper()
	s, err := NewScaling(cfg, testBackend)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func finiteScale(t *testing.T, what string, s float32) {
	t.Helper()
	if !(s >= kernels.FP8MinScale && s <= kernels.FP8MaxScale) || math.IsInf(float64(1/s), 0) {
		t.Errorf("%s: scale %g is not a finite positive scale with a finite inverse", what, s)
	}
}

func TestComputeScale(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	cases := []struct {
		amax, prev float32
		f          Format
		margin     int
		pow2       bool
		want       float32
	}{
		{1, 1, E4M3, 0, false, 448},
		{1, 1, E4M3, 1, false, 224},
		{1, 1, E4M3, 0, true, 256},
		{3, 1, E4M3, 0, false, float32(448) / 3},
		{3, 1, E4M3, 2, true, 32}, // 448/3/4 = 37.33 -> 32
		{2, 1, E5M2, 0, false, 28672},
		{2, 1, E5M2, 0, true, 16384},
		{0, 7, E4M3, 0, false, 7},           // all-zero tensor: scale kept
		{nan, 7, E4M3, 0, false, 7},         // NaN: kept
		{inf, 7, E5M2, 0, false, 7},         // Inf: kept
		{1e-45, 7, E4M3, 0, false, 0x1p126}, // 448/subnormal overflows float32: clamped
		{math.MaxFloat32, 7, E4M3, 200, false, 0x1p-126},
		{math.MaxFloat32, 7, E4M3, 200, true, 0x1p-126},
	}
	for _, c := range cases {
		got := kernels.FP8Scale(c.amax, c.prev, c.f, c.margin, c.pow2)
		if got != c.want {
			t.Errorf("kernels.FP8Scale(amax %g, prev %g, %v, margin %d, pow2 %v) = %g, want %g", c.amax, c.prev, c.f, c.margin, c.pow2, got, c.want)
		}
		finiteScale(t, "computeScale", got)
	}
}

// fill returns a tensor of n values whose amax is a (a at index 0, smaller values after).
func fill(n int, a float32) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = a * float32(i%5) / 5
	}
	x[0] = -a
	return x
}

// The delayed rule by hand: history 3, amaxes per step 2, 8, 1, 1, 1.
func TestDelayedUpdateRule(t *testing.T) {
	steps := []float32{2, 8, 1, 1, 1}
	for _, c := range []struct {
		algo string
		want []float32
	}{
		{AmaxMax, []float32{224, 56, 56, 56, 448}},
		{AmaxMostRecent, []float32{224, 56, 448, 448, 448}},
	} {
		s := newScaling(t, Config{Recipe: Delayed, History: 3, Amax: c.algo})
		sc := s.Scaler("x", E4M3)
		codes := make([]uint8, 10)
		for i, a := range steps {
			prev := sc.Scale()
			inv := sc.Quantize(hc(codes), hb(fill(10, a)))
			if i > 0 && inv != 1/prev {
				t.Errorf("%s step %d: quantized with 1/scale %g, want the previous step's 1/%g", c.algo, i, inv, prev)
			}
			if err := s.Update(); err != nil {
				t.Fatal(err)
			}
			if sc.Scale() != c.want[i] {
				t.Errorf("%s step %d (amax %g): scale %g, want %g", c.algo, i, a, sc.Scale(), c.want[i])
			}
		}
	}
}

// A stale delayed scale meets an outlier: the outlier saturates to ±448, never NaN, and
// the next scale follows it and stays finite. An all-zero tensor keeps the scale.
func TestOutlierAndZeroTensors(t *testing.T) {
	for _, recipe := range []string{Delayed, Current} {
		s := newScaling(t, Config{Recipe: recipe, History: 4})
		sc := s.Scaler("x", E4M3)
		g := s.Scaler("g", E5M2)
		codes := make([]uint8, 64)
		sc.Quantize(hc(codes), hb(fill(64, 1)))
		g.Quantize(hc(codes), hb(fill(64, 1e-7)))
		if err := s.Update(); err != nil {
			t.Fatal(err)
		}
		x := fill(64, 1)
		x[7] = 3e38
		x[9] = -1e30
		sc.Quantize(hc(codes), hb(x))
		for i, c := range codes {
			if c&0x7F == 0x7F {
				t.Fatalf("%s: outlier step: code[%d] = %#02x is NaN", recipe, i, c)
			}
		}
		if recipe == Delayed && (codes[7] != 0x7E || codes[9] != 0xFE) {
			t.Errorf("delayed: outliers coded %#02x, %#02x; want ±448 (0x7E, 0xFE)", codes[7], codes[9])
		}
		if err := s.Update(); err != nil {
			t.Fatal(err)
		}
		finiteScale(t, recipe+" after outlier", sc.Scale())
		g.Quantize(hc(codes), hb([]float32{float32(math.Inf(-1))}))
		if err := s.Check(); !errors.Is(err, ErrNonFinite) {
			t.Errorf("%s: Check after an Inf = %v, want ErrNonFinite", recipe, err)
		}
		if err := s.Update(); err != nil { // the Inf is now in g's history; g's scale is kept
			t.Fatal(err)
		}
		if want := float32(448) / 3e38; sc.Scale() != want {
			t.Errorf("%s: scale after outlier %g, want 448/3e38 = %g", recipe, sc.Scale(), want)
		}
		before := [2]float32{sc.Scale(), g.Scale()}
		sc.Quantize(hc(codes), hb(make([]float32, 64)))
		g.Quantize(hc(codes), hb(make([]float32, 64)))
		for i, c := range codes {
			if c != 0 {
				t.Fatalf("%s: zero tensor: code[%d] = %#02x", recipe, i, c)
			}
		}
		for range 5 { // the outlier leaves the history window of 4; zeros alone follow
			if err := s.Update(); err != nil {
				t.Fatal(err)
			}
		}
		if after := [2]float32{sc.Scale(), g.Scale()}; after != before {
			t.Errorf("%s: all-zero steps changed the scales %v to %v", recipe, before, after)
		}
		if err := s.Check(); err != nil {
			t.Errorf("%s: Check after finite steps = %v", recipe, err)
		}
		withNaN := fill(64, 2)
		withNaN[3] = float32(math.NaN())
		sc.Quantize(hc(codes), hb(withNaN))
		if err := s.Check(); !errors.Is(err, ErrNonFinite) {
			t.Errorf("%s: Check after a NaN = %v, want ErrNonFinite", recipe, err)
		}
		if err := s.Update(); err != nil {
			t.Fatal(err)
		}
		if sc.Scale() != before[0] {
			t.Errorf("%s: a NaN amax changed the scale %g to %g", recipe, before[0], sc.Scale())
		}
	}
}

// The first delayed step has no history: it scales just in time instead of with the
// initial scale 1, under which gradients of 1e-7 would all flush to zero in E5M2.
func TestDelayedFirstStepIsJustInTime(t *testing.T) {
	s := newScaling(t, Config{Recipe: Delayed, History: 2})
	g := s.Scaler("g", E5M2)
	dy := fill(100, 1e-7)
	codes := make([]uint8, 100)
	inv := g.Quantize(hc(codes), hb(dy))
	if want := 1 / (float32(57344) / 1e-7); inv != want {
		t.Errorf("first step 1/scale = %g, want 1/(57344/1e-7) = %g", inv, want)
	}
	if codes[0] != 0xFB { // -amax lands on -max
		t.Errorf("code of -amax = %#02x, want 0xFB", codes[0])
	}
	if g.Scale() != 1 {
		t.Errorf("a just-in-time step changed the delayed scale to %g", g.Scale())
	}
}

func TestCurrentScaling(t *testing.T) {
	s := newScaling(t, Config{Recipe: Current, History: 1, Margin: 1, Pow2: true})
	sc := s.Scaler("x", E4M3)
	codes := make([]uint8, 20)
	for _, a := range []float32{3, 0.01, 500} {
		inv := sc.Quantize(hc(codes), hb(fill(20, a)))
		want := kernels.FP8Scale(a, 0, E4M3, 1, true)
		if inv != 1/want || sc.Scale() != want {
			t.Errorf("amax %g: 1/scale %g, scale %g; want scale %g", a, inv, sc.Scale(), want)
		}
	}
}

// Two ranks see different amaxes; the reduce hook MAX-reduces them, so both get the
// scales of the global maximum.
func TestReduceHook(t *testing.T) {
	own := [2][]float32{{4, 1}, {2, 7}} // per rank: the amaxes of tensors a and b
	ranks := [2]*Scaling{}
	for r := range ranks {
		ranks[r] = newScaling(t, Config{Recipe: Delayed, History: 2})
		ranks[r].SetReduce(func(amax []float32) error { // an in-memory all-reduce
			if !reflect.DeepEqual(amax, own[r]) {
				t.Errorf("rank %d: hook got %v, want the rank's own amaxes %v", r, amax, own[r])
			}
			for i := range amax {
				amax[i] = max(own[0][i], own[1][i])
			}
			return nil
		})
		codes := make([]uint8, 8)
		ranks[r].Scaler("a", E4M3).Quantize(hc(codes), hb(fill(8, own[r][0])))
		ranks[r].Scaler("b", E5M2).Quantize(hc(codes), hb(fill(8, own[r][1])))
	}
	for r := range ranks {
		if err := ranks[r].Update(); err != nil {
			t.Fatal(err)
		}
		if a, b := ranks[r].scalers[0].Scale(), ranks[r].scalers[1].Scale(); a != 112 || b != 57344/float32(7) {
			t.Errorf("rank %d: scales %g, %g; want 448/4 = 112 and 57344/7", r, a, b)
		}
	}
	boom := errors.New("peer gone")
	ranks[0].SetReduce(func([]float32) error { return boom })
	if err := ranks[0].Update(); !errors.Is(err, boom) {
		t.Errorf("Update with a failing reduce = %v, want it wrapped", err)
	}
}

// A resumed Scaling continues bit-identically: run a few steps, save through JSON,
// restore into a fresh one, then run both on the same data and compare everything.
func TestStateRoundTripResumesExactly(t *testing.T) {
	for _, cfg := range []Config{
		{Recipe: Delayed, History: 3, Amax: AmaxMax, Margin: 1},
		{Recipe: Current, History: 1, Pow2: true},
	} {
		build := func() (*Scaling, []*Scaler) {
			s := newScaling(t, cfg)
			return s, []*Scaler{s.Scaler("w", E4M3), s.Scaler("g", E5M2)}
		}
		a, as := build()
		step := func(s *Scaling, ss []*Scaler, i int) []uint8 {
			var out []uint8
			for j, sc := range ss {
				x := randTensor(50, uint64(10*i+j), math.Pow(10, float64(j-3)))
				codes := make([]uint8, len(x))
				inv := sc.Quantize(hc(codes), hb(x))
				out = append(append(out, codes...), uint8(math.Float32bits(inv)), uint8(math.Float32bits(inv)>>24))
			}
			if err := s.Update(); err != nil {
				t.Fatal(err)
			}
			return out
		}
		for i := range 4 {
			step(a, as, i)
		}
		as[1].Quantize(hc(make([]uint8, 1)), hb([]float32{float32(math.NaN())})) // a pending NaN amax survives JSON too
		blob, err := json.Marshal(a.State())
		if err != nil {
			t.Fatal(err)
		}
		var st State
		if err := json.Unmarshal(blob, &st); err != nil {
			t.Fatal(err)
		}
		b, bs := build()
		if err := b.Restore(st, "state.json"); err != nil {
			t.Fatal(err)
		}
		if sa, sb := a.State(), b.State(); !sameState(sa, sb) {
			t.Fatalf("%s: restored state differs:\n%+v\n%+v", cfg.Recipe, sa, sb)
		}
		for i := 4; i < 7; i++ {
			if ca, cb := step(a, as, i), step(b, bs, i); !reflect.DeepEqual(ca, cb) {
				t.Fatalf("%s: step %d after resume differs", cfg.Recipe, i)
			}
		}
		if !sameState(a.State(), b.State()) {
			t.Errorf("%s: states differ after resumed steps", cfg.Recipe)
		}
	}
}

// sameState compares bit patterns (NaN included).
func sameState(a, b State) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestRestoreRefusesMismatches(t *testing.T) {
	cfg := Config{Recipe: Delayed, History: 2}
	src := newScaling(t, cfg)
	src.Scaler("w", E4M3)
	src.Scaler("g", E5M2)
	good := src.State()
	mutate := map[string]func(*State){
		"recipe":  func(s *State) { s.Recipe = Current },
		"history": func(s *State) { s.History = 5 },
		"missing": func(s *State) { s.Tensors = s.Tensors[:1] },
		"renamed": func(s *State) { s.Tensors[1].Name = "h" },
		"format":  func(s *State) { s.Tensors[0].Format = "E5M2" },
		"scale":   func(s *State) { s.Tensors[0].Scale = Float32(math.Inf(1)) },
		"zero":    func(s *State) { s.Tensors[1].Scale = 0 },
		"hist":    func(s *State) { s.Tensors[1].History = s.Tensors[1].History[:1] },
	}
	for name, m := range mutate {
		blob, _ := json.Marshal(good)
		var st State
		if err := json.Unmarshal(blob, &st); err != nil {
			t.Fatal(err)
		}
		m(&st)
		dst := newScaling(t, cfg)
		w := dst.Scaler("w", E4M3)
		dst.Scaler("g", E5M2)
		w.scale = 3
		err := dst.Restore(st, "ckpt/state.json")
		if !usererr.Is(err) {
			t.Errorf("%s: Restore = %v, want a user error", name, err)
		}
		if w.Scale() != 3 {
			t.Errorf("%s: a refused Restore changed a scale", name)
		}
	}
}

func TestFloat32JSON(t *testing.T) {
	for _, v := range []float32{0, float32(math.Copysign(0, -1)), 1, 0.1, 448.0 / 3, math.MaxFloat32, 1e-45, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())} {
		b, err := json.Marshal(Float32(v))
		if err != nil {
			t.Fatal(err)
		}
		var back Float32
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if math.Float32bits(float32(back)) != math.Float32bits(v) && !(v != v && back != back) {
			t.Errorf("%g -> %s -> %g", v, b, back)
		}
	}
	var f Float32
	if err := json.Unmarshal([]byte(`"big"`), &f); err == nil {
		t.Error(`"big" decoded without error`)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg   Config
		where string
	}{
		{Config{Recipe: "jit", History: 1}, "train.fp8.recipe"},
		{Config{Recipe: Blockwise, History: 1, Margin: -2}, "train.fp8.margin"},
		{Config{Recipe: Delayed, History: 0}, "train.fp8.history"},
		{Config{Recipe: Delayed, History: 1, Amax: "mean"}, "train.fp8.amax"},
		{Config{Recipe: Delayed, History: 1, Margin: -1}, "train.fp8.margin"},
	} {
		_, err := NewScaling(c.cfg, device.CPU[float32]())
		var u *usererr.Error
		if !errors.As(err, &u) || u.Where != c.where {
			t.Errorf("%+v: error %v, want a user error at %s", c.cfg, err, c.where)
		}
	}
}

// An evaluation while frozen quantizes with the training scales and leaves the state as
// it found it: no amax recorded, no scale set.
func TestFrozenLeavesStateAlone(t *testing.T) {
	for _, recipe := range []string{Delayed, Current} {
		s := newScaling(t, Config{Recipe: recipe, History: 2})
		sc := s.Scaler("x", E4M3)
		codes := make([]uint8, 16)
		sc.Quantize(hc(codes), hb(fill(16, 2)))
		if err := s.Update(); err != nil {
			t.Fatal(err)
		}
		sc.Quantize(hc(codes), hb(fill(16, 3))) // this step's amax so far: 3
		before := s.State()
		s.SetFrozen(true)
		inv := sc.Quantize(hc(codes), hb(fill(16, 50)))
		s.SetFrozen(false)
		if after := s.State(); !sameState(before, after) {
			t.Errorf("%s: a frozen quantization changed the state:\n%+v\n%+v", recipe, before, after)
		}
		if recipe == Delayed && inv != 1/sc.Scale() {
			t.Errorf("delayed: frozen quantization used 1/scale %g, want the training 1/%g", inv, sc.Scale())
		}
		if recipe == Current && inv != 1/(448.0/50) {
			t.Errorf("current: frozen quantization used 1/scale %g, want its own 50/448", inv)
		}
	}
}
