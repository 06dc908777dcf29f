// Package sweep is the pure, deterministic half of hyperparameter sweeps: the sweep file
// (a base run config, a search space over config key paths, a method, a metric, ASHA and
// transfer settings), the trial list it expands to, and ASHA's stop-or-continue rule.
// It does no I/O besides reading the sweep file and the base and target configs it names,
// so that the Sweep workflow can call it during replay.
package sweep

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/config"
)

// File is a sweep file as written, after strict decoding.
type File struct {
	Name          string           `yaml:"name"`           // sweep name = workflow ID; default: the file's name without extension
	Base          yaml.Node        `yaml:"base"`           // the run config: a path relative to the sweep file, or an inline mapping
	Set           []string         `yaml:"set"`            // key.path=value overrides applied to the base, as --set
	Space         yaml.Node        `yaml:"space"`          // key path -> {values | uniform | log_uniform | int}
	Method        string           `yaml:"method"`         // grid | random; default grid
	Seed          uint64           `yaml:"seed"`           // random: the sampler's seed; default 1
	Metric        string           `yaml:"metric"`         // loss | eval_loss; default eval_loss when the base has data.eval, else loss
	Direction     string           `yaml:"direction"`      // min | max; default min
	MaxTrials     int              `yaml:"max_trials"`     // grid: at most the grid (default the grid); random: required
	MaxConcurrent int              `yaml:"max_concurrent"` // trials training at once; default 1; at most max_trials
	ASHA          *ASHA            `yaml:"asha"`           // early stopping; absent = every trial runs all steps
	Transfer      *TransferSection `yaml:"transfer"`       // launch a target with the best hyperparameters
}

// ASHA configures asynchronous successive halving. Rungs are the steps at which a trial's
// metric is compared with the other trials' at the same step.
type ASHA struct {
	Rungs           []int64 `yaml:"rungs"`            // explicit rung steps, increasing; or:
	MinSteps        int64   `yaml:"min_steps"`        // first rung; later rungs multiply by reduction_factor
	ReductionFactor int     `yaml:"reduction_factor"` // keep the best 1/factor at each rung; default 3; >= 2
	GracePeriod     int64   `yaml:"grace_period"`     // no trial is stopped before this step; default 0
}

// TransferSection names the target run that inherits the best trial's hyperparameters.
type TransferSection struct {
	Target string   `yaml:"target"` // run config path, relative to the sweep file
	Set    []string `yaml:"set"`    // overrides applied to the target
}

// Sweep is a validated sweep, ready to start.
type Sweep struct {
	Name          string
	Base          config.Run // the base config, overrides applied
	Params        []Param    // the space, in file order
	Method        string
	Seed          uint64
	Metric        string
	Minimize      bool
	Trials        []Trial // expanded: the grid, or max_trials random samples
	MaxConcurrent int
	Rungs         []int64 // ASHA rung steps, increasing, each below train.steps; nil = no ASHA
	Reduction     int
	Grace         int64
	// TransferName, TransferSrc and TransferSets are the target run config (file name,
	// text, overrides) that Target applies the best hyperparameters to; TransferSrc is
	// nil without transfer.
	TransferName string
	TransferSrc  []byte
	TransferSets []string
	// Source is what every trial's config is made from (see BaseSource.Config).
	Source BaseSource
}

// Param is one dimension of the search space.
type Param struct {
	Key    string   // config key path, e.g. train.optim.lr
	Kind   string   // values | uniform | log_uniform | int
	Values []string // values: each a YAML scalar or flow value
	Lo, Hi float64  // uniform, log_uniform, int: the closed range
	Points int      // grid over a continuous range: points spread over it (log-spaced for log_uniform)
	Step   int64    // int: grid step; default 1
}

// Trial is one point of the space: its values, not its config, so that a sweep of a
// thousand trials stays far below Temporal's payload limit (BaseSource.Config makes the
// config where it is needed).
type Trial struct {
	Index  int      `json:"index"`
	Params []string `json:"params"` // "key=value", in Params order, usable as --set
	Steps  int64    `json:"steps"`  // its config's train.steps, for progress before it starts
}

// BaseSource is the base run config as the sweep file gives it: its text and the sweep's
// overrides, from which every trial's config is made. A sweep carries it once.
type BaseSource struct {
	Name string   `json:"name"` // the base config's file (or the sweep file's base key), for errors
	Src  []byte   `json:"src"`  // its text
	Sets []string `json:"sets"` // the sweep file's set entries
	// Dir is the folder relative data and checkpoint paths resolve against (the client's
	// working folder, so that any worker finds them); "" leaves them relative.
	Dir string `json:"dir"`
}

// Load reads and validates the sweep file at path. Every mistake is a user error naming
// the file and the key, found before anything starts.
func Load(path string) (*Sweep, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, usererr.New(path, "cannot read the sweep file: %v", err)
	}
	return Parse(path, src)
}

// Parse is Load for a sweep file in memory; relative paths in it are resolved against
// path's folder.
func Parse(path string, src []byte) (*Sweep, error) {
	loc := func(key string) string { return path + ": " + key }
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, usererr.New(path, "not a valid sweep file: %v; allowed keys: name, base, set, space, method, seed, metric, direction, max_trials, max_concurrent, asha, transfer", err)
	}
	s := &Sweep{Name: f.Name, Method: f.Method, Seed: f.Seed, Metric: f.Metric, MaxConcurrent: f.MaxConcurrent}
	if s.Name == "" {
		s.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	if !validName(s.Name) {
		return nil, usererr.New(loc("name"), "%q: want [A-Za-z0-9._-], at most 80 characters", s.Name)
	}
	dir := filepath.Dir(path)
	var err error

	// The base config: a path or an inline mapping.
	switch f.Base.Kind {
	case yaml.ScalarNode:
		p := f.Base.Value
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		s.Source.Name = p
		if s.Source.Src, err = os.ReadFile(p); err != nil {
			return nil, usererr.New(loc("base"), "cannot read the base config %s: %v", p, err)
		}
	case yaml.MappingNode:
		s.Source.Name = path + ": base"
		if s.Source.Src, err = yaml.Marshal(&f.Base); err != nil {
			return nil, fmt.Errorf("re-encoding the inline base: %w", err)
		}
	default:
		return nil, usererr.New(loc("base"), "want the path of a run config or an inline run config (a mapping)")
	}
	base, err := config.Parse(s.Source.Name, s.Source.Src, f.Set)
	if err != nil {
		return nil, err // names the base file (or set entry) and its key already
	}
	s.Base, s.Source.Sets = base, f.Set

	if err := s.parseSpace(&f.Space, loc); err != nil {
		return nil, err
	}
	if err := s.method(f, loc); err != nil {
		return nil, err
	}
	if err := s.metric(f, loc); err != nil {
		return nil, err
	}
	if err := s.asha(f.ASHA, loc); err != nil {
		return nil, err
	}
	if f.Transfer != nil {
		if err := s.transfer(f.Transfer, dir, loc); err != nil {
			return nil, err
		}
	}
	// Every trial's config must be a valid run: a value out of a key's bounds is found now.
	for i := range s.Trials {
		cfg, err := s.Source.Config(s.Name, s.Trials[i])
		if err != nil {
			return nil, err
		}
		s.Trials[i].Steps = int64(cfg.Train.Steps)
	}
	return s, nil
}

func validName(n string) bool {
	if n == "" || len(n) > 80 {
		return false
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// TrialName is a trial's run name (and checkpoint folder): the sweep's name and the index.
func TrialName(sweep string, index int) string { return fmt.Sprintf("%s-trial-%d", sweep, index) }

// Config is the run config of trial t of the sweep named sweep: the base text with the
// sweep's overrides, then the trial's values, then its run name, and relative paths
// resolved against Dir. It reads nothing, so that the Sweep workflow may call it when a
// trial starts; the same base, trial and Dir always give the same config.
func (b BaseSource) Config(sweep string, t Trial) (config.Run, error) {
	sets := slices.Concat(b.Sets, t.Params, []string{"name=" + TrialName(sweep, t.Index)})
	cfg, err := config.Parse(b.Name, b.Src, sets)
	if err != nil {
		var u *usererr.Error
		if errors.As(err, &u) {
			return config.Run{}, usererr.New(b.Name, "trial %d (%s): %s", t.Index, strings.Join(t.Params, ", "), u.Error())
		}
		return config.Run{}, err
	}
	if b.Dir != "" {
		cfg.ResolvePaths(b.Dir)
	}
	return cfg, nil
}
