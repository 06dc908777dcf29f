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
//	  wsd:        1 until step D, then 1 - (1-min) · (s-D) / (Steps-D), where D is
//	              DecayStart when set, else Steps-DecaySteps
//	  constant:   1
//
// Steps past the end stay at the final value.
//
// A schedule with Start > 0 begins at step Start (a restart on resume): step s follows the
// formulas above with s-Start for s, Steps-Start for Steps and DecayStart-Start for
// DecayStart, so that the first step after Start is the curve's first. The steps up to
// Start were trained under the schedule before the restart (the run's lineage records
// it); Factor gives 1 for them.
//
// Which factors change when Steps grows decides how a run may be extended: a constant
// schedule's never, a wsd schedule's not up to its decay start (with DecayStart the start
// stays where it is, with DecaySteps it moves to the new end), cosine's and linear's every
// one after warmup.
type Schedule struct {
	Steps      int     // total optimizer steps of the run
	Warmup     int     // linear warmup steps
	Decay      string  // cosine | linear | wsd | constant
	DecaySteps int     // wsd only: length of the final decay; 0 = 20% of Steps
	DecayStart int     // wsd only: the last step at the peak, the decay runs from it to Steps; 0 = use DecaySteps
	MinLRRatio float64 // final factor
	Start      int     // the step this schedule begins after; 0 = the run's start
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
	if s.DecayStart < 0 {
		return usererr.New(key("decay_start"), "must be at least 0 (0 = decay_steps places the decay), got %d", s.DecayStart)
	}
	if s.DecayStart > 0 && s.Decay != WSD {
		return usererr.New(key("decay_start"), "applies to decay wsd only, not %s; remove it or set train.schedule.decay=wsd", s.Decay)
	}
	if s.DecayStart > 0 && s.DecaySteps > 0 {
		return usererr.New(key("decay_start"), "set decay_start (%d) or decay_steps (%d), not both: the decay runs from decay_start to train.steps", s.DecayStart, s.DecaySteps)
	}
	if s.Start < 0 || (s.Start > 0 && s.Start >= s.Steps) {
		return usererr.New(key("start"), "must be in [0, train.steps = %d), got %d", s.Steps, s.Start)
	}
	if s.DecayStart > 0 && s.DecayStart <= s.Start {
		return usererr.New(key("decay_start"), "must come after train.schedule.start = %d, got %d", s.Start, s.DecayStart)
	}
	if s.MinLRRatio < 0 || s.MinLRRatio > 1 {
		return usererr.New(key("min_lr_ratio"), "must be in [0, 1], got %g", s.MinLRRatio)
	}
	return nil
}

// Factor is the LR multiple for step s (1-based).
func (s Schedule) Factor(step int) float64 {
	if s.Start > 0 && step <= s.Start {
		return 1
	}
	decayFrom := s.WSDStart() - s.Start
	step -= s.Start
	steps := s.Steps - s.Start
	if step <= s.Warmup {
		return float64(step) / float64(s.Warmup)
	}
	lo := s.MinLRRatio
	p := 1.0
	if steps > s.Warmup {
		p = math.Min(1, float64(step-s.Warmup)/float64(steps-s.Warmup))
	}
	switch s.Decay {
	case Cosine:
		return lo + (1-lo)*(1+math.Cos(math.Pi*p))/2
	case Linear:
		return 1 - (1-lo)*p
	case WSD:
		if step <= decayFrom {
			return 1
		}
		return 1 - (1-lo)*math.Min(1, float64(step-decayFrom)/float64(steps-decayFrom))
	}
	return 1
}

// WSDStart is the last step of a wsd schedule at the peak: DecayStart when set, else
// Steps minus DecaySteps (0 = 20% of the steps after Start, at least one).
func (s Schedule) WSDStart() int {
	if s.DecayStart > 0 {
		return s.DecayStart
	}
	d := s.DecaySteps
	if d == 0 {
		d = max(1, (s.Steps-s.Start)/5)
	}
	return s.Steps - d
}
