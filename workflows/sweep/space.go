package sweep

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/config"
)

// kinds are the ways a space entry can give its values, in the order messages list them.
var kinds = []string{"values", "uniform", "log_uniform", "int"}

// parseSpace reads `space:`, checking each key path against the run config by setting it
// on the base, so that a misspelt key is refused with the keys allowed there.
func (s *Sweep) parseSpace(n *yaml.Node, loc func(string) string) error {
	if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		return usererr.New(loc("space"), "want a mapping of config key paths to {values: [...]}, {uniform: [lo, hi]}, {log_uniform: [lo, hi]} or {int: [lo, hi]}")
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key := n.Content[i].Value
		where := loc("space." + key)
		if seen[key] {
			return usererr.New(where, "key given twice")
		}
		seen[key] = true
		p, err := parseParam(key, n.Content[i+1], where)
		if err != nil {
			return err
		}
		// The key must exist in a run config and take this kind of value.
		probe := p.Values
		if p.Kind != "values" {
			probe = []string{format(p.Lo, p.Kind)}
		}
		if _, err := config.Parse(s.Source.Name, s.Source.Src, []string{key + "=" + probe[0]}); err != nil {
			var u *usererr.Error
			if errors.As(err, &u) {
				return usererr.New(where, "%s", u.What)
			}
			return err
		}
		s.Params = append(s.Params, p)
	}
	return nil
}

func parseParam(key string, n *yaml.Node, where string) (Param, error) {
	p := Param{Key: key}
	if n.Kind != yaml.MappingNode {
		return p, usererr.New(where, "want one of %s with its values, e.g. {log_uniform: [1.0e-4, 1.0e-2]}", strings.Join(kinds, ", "))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		switch k {
		case "values", "uniform", "log_uniform", "int":
			if p.Kind != "" {
				return p, usererr.New(where, "give one of %s, not both %s and %s", strings.Join(kinds, ", "), p.Kind, k)
			}
			p.Kind = k
			if v.Kind != yaml.SequenceNode {
				return p, usererr.New(where+"."+k, "want a list")
			}
			if k == "values" {
				if len(v.Content) == 0 {
					return p, usererr.New(where+".values", "empty list: give at least one value")
				}
				for _, e := range v.Content {
					p.Values = append(p.Values, scalar(e))
				}
				continue
			}
			var r [2]float64
			if len(v.Content) != 2 || v.Decode(&r) != nil {
				return p, usererr.New(where+"."+k, "want [lo, hi], two numbers")
			}
			p.Lo, p.Hi = r[0], r[1]
		case "points":
			if v.Decode(&p.Points) != nil || p.Points < 1 {
				return p, usererr.New(where+".points", "want a positive integer (grid points over the range)")
			}
		case "step":
			if v.Decode(&p.Step) != nil || p.Step < 1 {
				return p, usererr.New(where+".step", "want a positive integer (grid step of an int range)")
			}
		default:
			return p, usererr.New(where+"."+k, "unknown key; allowed: %s, points, step", strings.Join(kinds, ", "))
		}
	}
	switch p.Kind {
	case "":
		return p, usererr.New(where, "want one of %s", strings.Join(kinds, ", "))
	case "uniform", "log_uniform":
		if !(p.Lo < p.Hi) || math.IsInf(p.Lo, 0) || math.IsInf(p.Hi, 0) {
			return p, usererr.New(where+"."+p.Kind, "empty range [%g, %g]: want lo < hi, both finite", p.Lo, p.Hi)
		}
		if p.Kind == "log_uniform" && p.Lo <= 0 {
			return p, usererr.New(where+".log_uniform", "bounds must be positive, got [%g, %g]", p.Lo, p.Hi)
		}
	case "int":
		if p.Lo != math.Trunc(p.Lo) || p.Hi != math.Trunc(p.Hi) {
			return p, usererr.New(where+".int", "want two integers, got [%g, %g]", p.Lo, p.Hi)
		}
		if p.Lo > p.Hi {
			return p, usererr.New(where+".int", "empty range [%g, %g]: want lo <= hi", p.Lo, p.Hi)
		}
		if p.Step == 0 {
			p.Step = 1
		}
	}
	if p.Step != 0 && p.Kind != "int" {
		return p, usererr.New(where+".step", "only an int range takes a step")
	}
	if p.Points != 0 && p.Kind != "uniform" && p.Kind != "log_uniform" {
		return p, usererr.New(where+".points", "only uniform and log_uniform take points")
	}
	return p, nil
}

// scalar is a YAML value as a --set value: scalars as written, lists and maps in flow style.
func scalar(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return n.Value
	}
	c := *n
	c.Style = yaml.FlowStyle
	b, err := yaml.Marshal(&c)
	if err != nil {
		panic(err) // a node the decoder built always encodes
	}
	return strings.TrimSpace(string(b))
}

// format writes a sampled number: integers for int ranges, else the shortest decimal that
// reads back to the same float64.
func format(v float64, kind string) string {
	if kind == "int" {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// grid lists the values of one dimension on a grid.
func (p Param) grid(where string) ([]string, error) {
	switch p.Kind {
	case "values":
		return p.Values, nil
	case "int":
		var out []string
		for v := int64(p.Lo); v <= int64(p.Hi); v += p.Step {
			out = append(out, strconv.FormatInt(v, 10))
		}
		return out, nil
	}
	if p.Points < 2 {
		return nil, usererr.New(where, "method grid needs points: N (at least 2) on a %s range", p.Kind)
	}
	out := make([]string, p.Points)
	for i := range out {
		t := float64(i) / float64(p.Points-1)
		v := p.Lo + t*(p.Hi-p.Lo)
		if p.Kind == "log_uniform" {
			v = math.Exp2(math.Log2(p.Lo) + t*(math.Log2(p.Hi)-math.Log2(p.Lo)))
		}
		out[i] = format(v, p.Kind)
	}
	return out, nil
}

// sample draws one value of the dimension.
func (p Param) sample(r *rand.Rand) string {
	switch p.Kind {
	case "values":
		return p.Values[r.IntN(len(p.Values))]
	case "int":
		n := (int64(p.Hi)-int64(p.Lo))/p.Step + 1
		return strconv.FormatInt(int64(p.Lo)+r.Int64N(n)*p.Step, 10)
	case "log_uniform":
		return format(math.Exp(math.Log(p.Lo)+r.Float64()*(math.Log(p.Hi)-math.Log(p.Lo))), p.Kind)
	}
	return format(p.Lo+r.Float64()*(p.Hi-p.Lo), p.Kind)
}

// method expands the space into trials: the whole grid in row-major order (the last key
// varies fastest), or max_trials samples from a PCG generator seeded by seed.
func (s *Sweep) method(f File, loc func(string) string) error {
	if s.Method == "" {
		s.Method = "grid"
	}
	if s.Seed == 0 {
		s.Seed = 1
	}
	if f.MaxTrials < 0 {
		return usererr.New(loc("max_trials"), "want a positive integer, got %d", f.MaxTrials)
	}
	switch s.Method {
	case "grid":
		axes := make([][]string, len(s.Params))
		total := 1
		for i, p := range s.Params {
			v, err := p.grid(loc("space." + p.Key))
			if err != nil {
				return err
			}
			axes[i] = v
			total *= len(v)
			if total > 100000 {
				return usererr.New(loc("space"), "the grid has more than 100000 points; use method: random with max_trials")
			}
		}
		n := total
		if f.MaxTrials > 0 {
			n = min(n, f.MaxTrials)
		}
		for i := range n {
			t := Trial{Index: i, Params: make([]string, len(axes))}
			rest := i
			for d := len(axes) - 1; d >= 0; d-- {
				t.Params[d] = s.Params[d].Key + "=" + axes[d][rest%len(axes[d])]
				rest /= len(axes[d])
			}
			s.Trials = append(s.Trials, t)
		}
	case "random":
		if f.MaxTrials == 0 {
			return usererr.New(loc("max_trials"), "method random needs max_trials")
		}
		r := rand.New(rand.NewPCG(s.Seed, 0x5eed))
		for i := range f.MaxTrials {
			t := Trial{Index: i}
			for _, p := range s.Params {
				t.Params = append(t.Params, p.Key+"="+p.sample(r))
			}
			s.Trials = append(s.Trials, t)
		}
	default:
		return usererr.New(loc("method"), "unknown method %q; allowed: grid, random", s.Method)
	}
	if s.MaxConcurrent == 0 {
		s.MaxConcurrent = 1
	}
	if s.MaxConcurrent < 0 || s.MaxConcurrent > len(s.Trials) {
		return usererr.New(loc("max_concurrent"), "%d, but the sweep has %d trials: want 1 to %d", s.MaxConcurrent, len(s.Trials), len(s.Trials))
	}
	return nil
}

// metric checks metric and direction.
func (s *Sweep) metric(f File, loc func(string) string) error {
	if s.Metric == "" {
		s.Metric = "loss"
		if s.Base.Data.Eval != "" {
			s.Metric = "eval_loss"
		}
	}
	switch s.Metric {
	case "loss":
	case "eval_loss":
		if s.Base.Data.Eval == "" {
			return usererr.New(loc("metric"), "eval_loss needs data.eval in the base config; or use metric: loss (training loss)")
		}
	default:
		return usererr.New(loc("metric"), "unknown metric %q; allowed: loss, eval_loss", s.Metric)
	}
	switch f.Direction {
	case "", "min":
		s.Minimize = true
	case "max":
	default:
		return usererr.New(loc("direction"), "unknown direction %q; allowed: min, max", f.Direction)
	}
	return nil
}

// asha checks the ASHA section and lists its rungs.
func (s *Sweep) asha(a *ASHA, loc func(string) string) error {
	if a == nil {
		return nil
	}
	steps := int64(s.Base.Train.Steps)
	s.Reduction, s.Grace = a.ReductionFactor, a.GracePeriod
	if s.Reduction == 0 {
		s.Reduction = 3
	}
	if s.Reduction < 2 {
		return usererr.New(loc("asha.reduction_factor"), "want 2 or more, got %d", s.Reduction)
	}
	if s.Grace < 0 || s.Grace >= steps {
		return usererr.New(loc("asha.grace_period"), "want 0 to train.steps-1 (%d), got %d", steps-1, s.Grace)
	}
	switch {
	case len(a.Rungs) > 0 && a.MinSteps > 0:
		return usererr.New(loc("asha"), "give rungs or min_steps, not both")
	case len(a.Rungs) > 0:
		for i, r := range a.Rungs {
			if r <= 0 || r >= steps || (i > 0 && r <= a.Rungs[i-1]) {
				return usererr.New(loc(fmt.Sprintf("asha.rungs[%d]", i)), "rungs must increase and lie in 1..train.steps-1 (%d), got %d", steps-1, r)
			}
		}
		s.Rungs = a.Rungs
	case a.MinSteps > 0:
		if a.MinSteps >= steps {
			return usererr.New(loc("asha.min_steps"), "want below train.steps (%d), got %d", steps, a.MinSteps)
		}
		for r := a.MinSteps; r < steps; r *= int64(s.Reduction) {
			s.Rungs = append(s.Rungs, r)
		}
	default:
		return usererr.New(loc("asha"), "give rungs: [steps, ...] or min_steps: N")
	}
	return nil
}

// Fields splits a swept value written as a flow mapping ("{d_model: 64, n_heads: 2}")
// into its keys and values in the order written, each value as a --set value, so that
// results can name a mapping by the keys that vary rather than by the whole mapping. It
// returns false for any other value.
func Fields(value string) ([][2]string, bool) {
	var n yaml.Node
	if yaml.Unmarshal([]byte(value), &n) != nil || len(n.Content) != 1 || n.Content[0].Kind != yaml.MappingNode {
		return nil, false
	}
	m := n.Content[0]
	out := make([][2]string, 0, len(m.Content)/2)
	for i := 0; i+1 < len(m.Content); i += 2 {
		out = append(out, [2]string{m.Content[i].Value, scalar(m.Content[i+1])})
	}
	return out, true
}
