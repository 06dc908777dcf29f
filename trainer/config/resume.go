package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/optim"
)

// How `herd resume --steps` carries a cosine or linear schedule (or a wsd one already in
// its decay) to the new number of steps.
const (
	// Restart begins a new curve after the committed step and runs it to the new end,
	// from the peak LR without warmup (train.schedule.start = the step, warmup = 0).
	Restart = "restart"
	// Stretch keeps the curve's formula over the new number of steps: from the committed
	// step on, the LR follows the curve the run would have had with that many steps.
	Stretch = "stretch"
)

// Change is one config key that a resume changed, at the step the run had committed; the
// run's lineage is the list of them in order. Was and Now are JSON texts, as in Difference.
type Change struct {
	Step int64  `json:"step"`
	Key  string `json:"key"`
	Was  string `json:"was"`
	Now  string `json:"now"`
}

func (c Change) String() string {
	return fmt.Sprintf("at step %d: %s %s -> %s", c.Step, c.Key, c.Was, c.Now)
}

// Resumable reports whether a resume may change key: the run's length, its peak LR and
// its schedule. They act only through the LR of the steps still to come. Every other key
// of the hash (shapes, tokenizer, data layout, seed, optimizer constants) shapes what the
// checkpoint holds or how it is read, and stays as the checkpoint has it.
func Resumable(key string) bool {
	return key == "train.steps" || key == "train.optim.lr" || strings.HasPrefix(key, "train.schedule.")
}

// Extension is what a resume asks to change; zero fields change nothing.
type Extension struct {
	Steps    int      // train.steps: the total the run trains to
	LR       float64  // train.optim.lr: the new peak LR
	Schedule string   // Restart or Stretch, or "" to let the schedule extend by itself
	Sets     []string // key=value for other resumable keys (train.schedule.*)
}

// Resume returns the config of the run as it continues after committed step step with the
// changes e asks for, and those changes. A schedule extends by itself when every step
// already trained keeps its LR: constant always, wsd while step is at most its decay start
// (train.schedule.decay_start stays put; a decay placed by decay_steps moves to the new
// end). Cosine and linear, and wsd past its decay start, need e.Schedule: without it
// Resume refuses with a user error that names both options. Errors are user errors naming
// the flag at fault.
func (r Run) Resume(step int64, e Extension) (Run, []Change, error) {
	next := r
	overrides, keys, err := parseSets(e.Sets)
	if err != nil {
		return r, nil, err
	}
	for i, key := range keys {
		if err := decodeInto(reflect.ValueOf(&next).Elem(), overrides[i], "", setLoc); err != nil {
			return r, nil, err
		}
		for _, d := range Diff(r, next) {
			if !Resumable(d.Key) {
				return r, nil, usererr.New(setLoc(key), "%s is part of what the checkpoint holds (the run has %s, this asks %s); a resume may change train.steps, train.optim.lr, train.schedule.* and parallel.data only: start a new run with `herd run` to change it",
					d.Key, d.Was, d.Now)
			}
		}
	}
	if e.LR != 0 {
		next.Train.Optim.LR = e.LR
	}
	if e.Steps != 0 {
		if int64(e.Steps) <= step {
			return r, nil, usererr.New("--steps", "the run has committed step %d; --steps is the total to train to and must be more, got %d", step, e.Steps)
		}
		next.Train.Steps = e.Steps
	}
	old := r.Train.LRSchedule()
	extended := next.Train.Steps != r.Train.Steps
	switch e.Schedule {
	case "":
		if extended {
			if err := extendsItself(old, step, next.Train.Steps); err != nil {
				return r, nil, err
			}
		}
	case Stretch:
		if !extended {
			return r, nil, usererr.New("--schedule", "stretch carries the curve to a new number of steps; give --steps")
		}
	case Restart:
		if int64(next.Train.Steps) <= step {
			return r, nil, usererr.New("--schedule", "restart runs a new curve from step %d to train.steps = %d: nothing is left; give --steps", step, next.Train.Steps)
		}
		s := &next.Train.Schedule
		s.Start, s.Warmup = int(step), 0
		if s.DecayStart > 0 && s.DecayStart <= int(step) {
			s.DecayStart = 0 // the old decay is behind; decay_steps places the new one
		}
	default:
		return r, nil, usererr.New("--schedule", "unknown schedule %q; allowed: restart, stretch", e.Schedule)
	}
	if err := next.Validate(); err != nil {
		return r, nil, err
	}
	var changes []Change
	for _, d := range Diff(r, next) {
		changes = append(changes, Change{Step: step, Key: d.Key, Was: d.Was, Now: d.Now})
	}
	return next, changes, nil
}

// extendsItself refuses to extend schedule s to steps steps without being told how when
// that would change the LR of steps already trained (up to step).
func extendsItself(s optim.Schedule, step int64, steps int) error {
	how := fmt.Sprintf("say how with --schedule restart (a new %s from step %d to %d, from the peak LR or --lr) or --schedule stretch (the same curve over %d steps)", s.Decay, step, steps, steps)
	switch s.Decay {
	case optim.Cosine, optim.Linear:
		return usererr.New("--steps", "a %s schedule does not extend by itself: %s", s.Decay, how)
	case optim.WSD:
		if d := s.WSDStart(); step > int64(d) {
			return usererr.New("--steps", "the run's wsd decay began after step %d, before its committed step %d; %s, or resume a run whose decay lies ahead (train.schedule.decay_start)", d, step, how)
		}
	}
	return nil
}

// Notes says what changes imply beyond their keys, to be shown with them: in metap mode
// train.steps is also the MetaP horizon (metap.horizon_exponent), so a new length scales
// every tensor's LR from the resume on, as a run planned that long would have had it.
func (r Run) Notes(changes []Change) []string {
	exp := r.MetaP.HorizonExponent
	if r.MetaP.Mode != "metap" || exp == 0 {
		return nil
	}
	var out []string
	for _, c := range changes {
		was, err1 := strconv.ParseFloat(c.Was, 64)
		now, err2 := strconv.ParseFloat(c.Now, 64)
		if c.Key != "train.steps" || err1 != nil || err2 != nil {
			continue
		}
		out = append(out, fmt.Sprintf("at step %d: train.steps is the MetaP horizon (metap.horizon_exponent %g): every tensor's LR is now %.4g times what it was",
			c.Step, exp, math.Pow(now/was, -exp)))
	}
	return out
}
