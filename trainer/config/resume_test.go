package config

import (
	"math"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
)

// resumable is a valid 20-step run with the given decay and warmup 2.
func resumable(t *testing.T, decay string, sets ...string) Run {
	t.Helper()
	src := "name: r\nmodel: {preset: tiny}\ndata: {train: x.json}\ntrain: {steps: 20, global_batch: 2, micro_batch: 2, schedule: {warmup: 2, decay: " + decay + ", min_lr_ratio: 0.1}}\n"
	r, err := Parse("r.yaml", []byte(src), sets)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func wantRefused(t *testing.T, err error, want ...string) {
	t.Helper()
	if !usererr.Is(err) {
		t.Fatalf("got %v, want a user error", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q does not say %q", err, w)
		}
	}
}

// Extending cosine must say how; each way gives the LR its formula says, step by step.
func TestResumeCosine(t *testing.T) {
	r := resumable(t, "cosine")
	_, _, err := r.Resume(20, Extension{Steps: 40})
	wantRefused(t, err, "--schedule restart", "--schedule stretch")

	stretched, changes, err := r.Resume(20, Extension{Steps: 40, Schedule: Stretch})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || changes[0] != (Change{Step: 20, Key: "train.steps", Was: "20", Now: "40"}) {
		t.Errorf("stretch changed %v, want train.steps 20 -> 40 at step 20", changes)
	}
	s := stretched.Train.LRSchedule()
	for step := 21; step <= 40; step++ {
		want := 0.1 + 0.9*(1+math.Cos(math.Pi*float64(step-2)/38))/2
		if got := s.Factor(step); math.Abs(got-want) > 1e-12 {
			t.Errorf("stretch: step %d factor %g, want %g", step, got, want)
		}
	}

	restarted, changes, err := r.Resume(20, Extension{Steps: 40, Schedule: Restart, LR: 1e-3})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range changes {
		got[c.Key] = c.Was + " -> " + c.Now
	}
	for key, want := range map[string]string{"train.steps": "20 -> 40", "train.optim.lr": "0.003 -> 0.001", "train.schedule.start": "absent -> 20", "train.schedule.warmup": "2 -> 0"} {
		if got[key] != want {
			t.Errorf("restart: %s changed %q, want %q (all: %v)", key, got[key], want, changes)
		}
	}
	s = restarted.Train.LRSchedule()
	for step := 21; step <= 40; step++ {
		want := 0.1 + 0.9*(1+math.Cos(math.Pi*float64(step-20)/20))/2
		if got := s.Factor(step); math.Abs(got-want) > 1e-12 {
			t.Errorf("restart: step %d factor %g, want %g", step, got, want)
		}
	}
	if f := s.Factor(21); f < 0.99 {
		t.Errorf("restart begins at the peak: step 21 factor %g", f)
	}
}

// wsd and constant extend by themselves while the steps trained keep their LR.
func TestResumeExtendsItself(t *testing.T) {
	for _, c := range []struct {
		decay string
		sets  []string
		step  int64
		ok    bool
	}{
		{"constant", nil, 20, true},
		{"wsd", []string{"train.schedule.decay_start=20"}, 20, true}, // decay still ahead
		{"wsd", []string{"train.schedule.decay_start=30"}, 20, true},
		{"wsd", nil, 10, true},  // decay_steps' decay (after 16) moves to the new end
		{"wsd", nil, 20, false}, // already decayed
		{"wsd", []string{"train.schedule.decay_start=10"}, 20, false},
		{"linear", nil, 20, false},
	} {
		r := resumable(t, c.decay, c.sets...)
		next, _, err := r.Resume(c.step, Extension{Steps: 40})
		if !c.ok {
			wantRefused(t, err, "--steps", "restart", "stretch")
			continue
		}
		if err != nil {
			t.Fatalf("%s %v from step %d: %v", c.decay, c.sets, c.step, err)
		}
		was, now := r.Train.LRSchedule(), next.Train.LRSchedule()
		for step := 1; step <= int(c.step); step++ {
			if was.Factor(step) != now.Factor(step) {
				t.Errorf("%s %v: step %d's LR changed from %g to %g", c.decay, c.sets, step, was.Factor(step), now.Factor(step))
			}
		}
	}
}

// What the checkpoint holds stays refused, naming both values; so do bad flags.
func TestResumeRefusals(t *testing.T) {
	r := resumable(t, "cosine")
	_, _, err := r.Resume(5, Extension{Sets: []string{"model.d_model=256"}})
	wantRefused(t, err, "--set model.d_model", "model.d_model", "128", "256")
	_, _, err = r.Resume(5, Extension{Sets: []string{"data.shuffle_seed=9"}})
	wantRefused(t, err, "data.shuffle_seed")
	_, _, err = r.Resume(20, Extension{Steps: 20})
	wantRefused(t, err, "--steps", "20")
	_, _, err = r.Resume(20, Extension{Steps: 40, Schedule: "warm"})
	wantRefused(t, err, "--schedule", "restart, stretch")
	_, _, err = r.Resume(5, Extension{Schedule: Stretch})
	wantRefused(t, err, "--steps")
	_, _, err = r.Resume(5, Extension{Sets: []string{"train.schedule.min_lr_ratio=2"}})
	wantRefused(t, err, "min_lr_ratio")
	if _, changes, err := r.Resume(5, Extension{Sets: []string{"train.schedule.min_lr_ratio=0.2"}}); err != nil || len(changes) != 1 {
		t.Errorf("a new min_lr_ratio: %v, %v", changes, err)
	}
}

// In metap mode a new length is a new horizon, and the notes say by how much the LR moves.
func TestResumeNotesTheHorizon(t *testing.T) {
	r := resumable(t, "constant", "metap.mode=metap", "metap.horizon_exponent=0.3")
	_, changes, err := r.Resume(20, Extension{Steps: 40})
	if err != nil {
		t.Fatal(err)
	}
	notes := r.Notes(changes)
	if len(notes) != 1 || !strings.Contains(notes[0], "at step 20") || !strings.Contains(notes[0], "0.8123 times") {
		t.Errorf("notes %q, want one saying the LR is 2^-0.3 = 0.8123 times what it was", notes)
	}
	if notes := resumable(t, "constant", "metap.mode=sp").Notes(changes); notes != nil {
		t.Errorf("sp has no horizon, got notes %q", notes)
	}
}
