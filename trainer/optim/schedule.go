package optim

import (
	"math"

	"github.com/herdml/herd/internal/usererr"
)

// Decay names the shape of the learning rate after warmup.
const (
	Cosine   = "cosine"   // half a cosine from the peak down to min_lr_ratio
	Linear   = "linear"   // a straight line from the peak down to min_lr_ratio
	WSD      = "wsd"      // warmup-stable-decay: flat at the peak, then a linear decay over the last DecaySteps
	Constant = "constant" // the peak until the end
)

// Schedule gives the learning-rate factor (a multiple of each tensor's peak LR) for every
// step. Steps are counted from 1: step s is the s-th optimizer update.
//
//	s <= Warmup:  s / Warmup                       (linear warmup, never 0)
//	after:        p = (s - Warmup) / (Steps - Warmup), in (0, 1]; the last step reaches min
//	  cosine:     min + (1-min) · (1 + cos(π·p)) / 2
//	  linear:     1 - (1-min) · p
//	  wsd:        1 until Steps-DecaySteps, then 1 - (1-min) · q, q = (s-(Steps-DecaySteps)) / DecaySteps
//	  constant:   1
//
// Steps past the end stay at the final value.
type Schedule struct {
	Steps      int     // total optimizer steps of the run
	Warmup     int     // linear warmup steps
	Decay      string  // cosine | linear | wsd | constant
	DecaySteps int     // wsd only: length of the final decay; 0 = 20% of Steps
	MinLRRatio float64 // final factor
}

// Validate checks the schedule; errors are user errors naming the train.schedule key.
func (s Schedule) Validate() error {
	key := func(k string) string { return "train.schedule." + k }
	switch s.Decay {
	case Cosine, Linear, WSD, Constant:
	default:
		return usererr.New(key("decay"), "unknown decay %q; allowed: cosine, linear, wsd, constant", s.Decay)
	}
	if s.Warmup < 0 {
		return usererr.New(key("warmup"), "must be at least 0, got %d", s.Warmup)
	}
	if s.DecaySteps < 0 || s.DecaySteps > s.Steps {
		return usererr.New(key("decay_steps"), "must be in [0, train.steps = %d], got %d", s.Steps, s.DecaySteps)
	}
	if s.MinLRRatio < 0 || s.MinLRRatio > 1 {
		return usererr.New(key("min_lr_ratio"), "must be in [0, 1], got %g", s.MinLRRatio)
	}
	return nil
}

// Factor is the LR multiple for step s (1-based).
func (s Schedule) Factor(step int) float64 {
	if step <= s.Warmup {
		return float64(step) / float64(s.Warmup)
	}
	lo := s.MinLRRatio
	p := 1.0
	if s.Steps > s.Warmup {
		p = math.Min(1, float64(step-s.Warmup)/float64(s.Steps-s.Warmup))
	}
	switch s.Decay {
	case Cosine:
		return lo + (1-lo)*(1+math.Cos(math.Pi*p))/2
	case Linear:
		return 1 - (1-lo)*p
	case WSD:
		d := s.DecaySteps
		if d == 0 {
			d = max(1, s.Steps/5)
		}
		start := s.Steps - d
		if step <= start {
			return 1
		}
		return 1 - (1-lo)*math.Min(1, float64(step-start)/float64(d))
	}
	return 1
}
