package generate

import (
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels/device"
	"github.com/herdml/herd/trainer/model"
)

// randomDecoder is a decoder of the tiny preset (MoE, NoPE, grouped-query attention) with
// random weights, whose distribution over the next byte is wide enough to sample from.
func randomDecoder(t *testing.T) *model.Decoder[float32] {
	t.Helper()
	cfg := model.Presets["tiny"]
	cfg.SeqLen = 40
	m := model.New[float32](cfg, device.CPU[float32](), 1)
	m.Init(5, func(t model.Tensor) float64 { return 0.3 / math.Sqrt(float64(t.Shape[len(t.Shape)-1])) })
	return m.NewDecoder()
}

var prompt = []int32{'f', 'u', 'n', 'c', ' '}

func TestSamplingIsDeterministicAndTopK1IsGreedy(t *testing.T) {
	d := randomDecoder(t)
	greedy, stop := Run(d, prompt, Options{MaxTokens: 20, TopP: 1}, nil)
	if stop != StopMaxTokens || len(greedy) != 20 {
		t.Fatalf("greedy: %d tokens, stopped at %s; want 20 at max_tokens", len(greedy), stop)
	}
	hot := Options{MaxTokens: 20, Temperature: 1.5, TopP: 1, Seed: 7}
	a, _ := Run(d, prompt, hot, nil)
	b, _ := Run(d, prompt, hot, nil)
	if !slices.Equal(a, b) {
		t.Errorf("the same seed sampled %v, then %v", a, b)
	}
	if slices.Equal(a, greedy) {
		t.Errorf("sampling at temperature 1.5 gave the greedy tokens: the test cannot tell them apart")
	}
	hot.Seed = 8
	if c, _ := Run(d, prompt, hot, nil); slices.Equal(a, c) {
		t.Errorf("seeds 7 and 8 sampled the same %v", c)
	}
	for _, o := range []Options{
		{MaxTokens: 20, Temperature: 1.5, TopK: 1, TopP: 1, Seed: 7}, // only the argmax is left
		{MaxTokens: 20, Temperature: 1.5, TopP: 1e-9, Seed: 7},       // the nucleus is the argmax
		{MaxTokens: 20, Temperature: 1e-300, TopP: 1, Seed: 7},       // all mass on the argmax
	} {
		if got, _ := Run(d, prompt, o, nil); !slices.Equal(got, greedy) {
			t.Errorf("%+v sampled %v, want the greedy %v", o, got, greedy)
		}
	}
}

func TestStops(t *testing.T) {
	d := randomDecoder(t)
	greedy, _ := Run(d, prompt, Options{MaxTokens: 10, TopP: 1}, nil)
	var streamed []int32
	got, stop := Run(d, prompt, Options{MaxTokens: 10, TopP: 1, Stop: []int32{greedy[3]}}, func(id int32) { streamed = append(streamed, id) })
	if i := slices.Index(greedy, greedy[3]); stop != StopEnd || !slices.Equal(got, greedy[:i+1]) {
		t.Errorf("end token %d: got %v stopped at %s, want %v at end", greedy[3], got, stop, greedy[:i+1])
	}
	if !slices.Equal(streamed, got) {
		t.Errorf("emitted %v, returned %v", streamed, got)
	}
	got, stop = Run(d, prompt, Options{MaxTokens: 100, TopP: 1}, nil)
	if want := d.Cap() - len(prompt) + 1; stop != StopSeqLen || len(got) != want {
		t.Errorf("past seq_len: %d tokens stopped at %s, want %d at seq_len", len(got), stop, want)
	}
}

func TestValidate(t *testing.T) {
	ok := Options{MaxTokens: 1, TopP: 1}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for flag, o := range map[string]Options{
		"--max-tokens":  {MaxTokens: 0, TopP: 1},
		"--temperature": {MaxTokens: 1, Temperature: -1, TopP: 1},
		"--top-k":       {MaxTokens: 1, TopK: -1, TopP: 1},
		"--top-p":       {MaxTokens: 1, TopP: 2},
	} {
		err := o.Validate()
		var ue *usererr.Error
		if !errors.As(err, &ue) || ue.Where != flag {
			t.Errorf("%+v: %v, want a user error at %s", o, err, flag)
		}
	}
	if err := (Options{MaxTokens: 1, Temperature: math.NaN(), TopP: 1}).Validate(); err == nil {
		t.Errorf("temperature NaN accepted")
	}
}
