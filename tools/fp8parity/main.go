// Command fp8parity makes the figures of docs/fp8.md: it trains one configuration and
// records its loss curve and peak resident memory, and plots fp32 and fp8 curves side by
// side.
//
//	go run ./tools/fp8parity train -o tiny-fp8.json examples/tiny.yaml --set train.precision=fp8
//	go run ./tools/fp8parity plot -o docs/fp8-parity.png tiny-fp32.json tiny-fp8.json ...
//
// train starts from the initialisation every time and writes no checkpoint, so two runs
// that differ only in train.precision see the same init and the same batches.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/herdml/herd/internal/plotgrid"
	"github.com/herdml/herd/trainer"
	"github.com/herdml/herd/trainer/config"
)

// Curve is one run's record, the JSON that train writes and plot reads.
type Curve struct {
	Config    string   `json:"config"`
	Sets      []string `json:"sets"`
	Precision string   `json:"precision"`
	// Label names the run in plots: the precision and, for fp8, the scaling recipe
	// ("fp8 delayed h1024 m2", "fp8 current grad_fp32").
	Label     string    `json:"label"`
	Loss      []float64 `json:"loss"`       // training loss of every step
	EvalSteps []int64   `json:"eval_steps"` // steps after which an evaluation ran
	EvalLoss  []float64 `json:"eval_loss"`
	// PeakRSS is the process's peak resident memory (VmHWM) after training, in bytes: with
	// data.synthetic and no eval data, that of the model, the optimizer and the training
	// steps' activations and scratch.
	PeakRSS int64 `json:"peak_rss"`
	// LiveHeap is the Go heap still reachable after training and a full collection, in
	// bytes: what the trainer itself keeps (model, optimizer, activations, scratch, FP8
	// codes), without the collector's headroom that PeakRSS includes.
	LiveHeap int64 `json:"live_heap"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fp8parity:", err)
		os.Exit(1)
	}
}

type sets []string

func (s *sets) String() string     { return strings.Join(*s, " ") }
func (s *sets) Set(v string) error { *s = append(*s, v); return nil }

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: fp8parity train|plot ...")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	out := fs.String("o", "", "output file")
	var set sets
	fs.Var(&set, "set", "key.path=value override (repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("-o is required")
	}
	switch args[0] {
	case "train":
		if fs.NArg() != 1 {
			return errors.New("train wants one config")
		}
		return train(fs.Arg(0), set, *out)
	case "plot":
		var cs []Curve
		for _, f := range fs.Args() {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			var c Curve
			if err := json.Unmarshal(b, &c); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			cs = append(cs, c)
		}
		return plotCurves(*out, cs)
	}
	return fmt.Errorf("unknown command %q; want train or plot", args[0])
}

// train runs cfg's train.steps from the initialisation with an evaluation every
// train.eval.every steps and after the last, and writes no checkpoint, so that the peak
// resident memory is that of the training steps (and evaluations) alone. It rewrites the
// curve in out after every evaluation, so that a run cut short leaves its curve so far.
func train(path string, set []string, out string) error {
	cfg, err := config.Load(path, set)
	if err != nil {
		return err
	}
	c := Curve{Config: path, Sets: set, Precision: cfg.Train.Precision, Label: cfg.Train.Precision}
	if f := cfg.Train.FP8; cfg.Train.Precision == "fp8" {
		c.Label += " " + f.Recipe
		if f.Recipe == "delayed" {
			c.Label += fmt.Sprintf(" h%d m%d", f.History, f.Margin)
		}
		if f.GradFP32 {
			c.Label += " grad_fp32"
		}
		if f.GradE4M3 {
			c.Label += " grad_e4m3"
		}
	}
	save := func() error {
		b, err := json.MarshalIndent(c, "", " ")
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	}
	tr, err := trainer.New(cfg, trainer.Options{})
	if err != nil {
		return err
	}
	defer tr.Close()
	every := cfg.Train.Eval.Every
	for step := 1; step <= cfg.Train.Steps; step++ {
		st, err := tr.Step()
		if err != nil {
			return err
		}
		c.Loss = append(c.Loss, st.Loss)
		fmt.Fprintf(os.Stderr, "%s %s step %d loss %.4f\n", filepath.Base(path), c.Label, step, st.Loss)
		if cfg.Data.Eval != "" && (every > 0 && step%every == 0 || step == cfg.Train.Steps) {
			ev, err := tr.Eval(cfg.Train.Eval.Batches)
			if err != nil {
				return err
			}
			c.EvalSteps, c.EvalLoss = append(c.EvalSteps, int64(step)), append(c.EvalLoss, ev.Loss)
			fmt.Fprintf(os.Stderr, "%s %s step %d eval %.4f\n", filepath.Base(path), c.Label, step, ev.Loss)
			if err := save(); err != nil {
				return err
			}
		}
	}
	if c.PeakRSS, err = peakRSS(); err != nil {
		return err
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	c.LiveHeap = int64(ms.HeapAlloc)
	runtime.KeepAlive(tr)
	return save()
}

// peakRSS reads VmHWM, the peak resident set size, from /proc/self/status.
func peakRSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM in /proc/self/status")
}

// plotCurves draws one panel per config (training loss faint, eval loss bold, fp32 and
// each fp8 recipe, in the order given) and a last panel with the eval loss gap of each
// fp8 run over its config's fp32 run in percent.
func plotCurves(out string, cs []Curve) error {
	var configs []string
	byConfig, titles := map[string][]Curve{}, map[string]string{}
	for _, c := range cs {
		key, title := runName(c)
		if byConfig[key] == nil {
			configs, titles[key] = append(configs, key), title
		}
		if c.Label == "" { // written before labels
			c.Label = c.Precision
		}
		byConfig[key] = append(byConfig[key], c)
	}
	palette := []color.Color{color.RGBA{0, 90, 180, 255}, color.RGBA{220, 60, 30, 255}, color.RGBA{40, 140, 60, 255}, color.RGBA{130, 50, 160, 255}, color.Black}
	gap := plot.New()
	gap.Title.Text = "eval loss, fp8 vs fp32"
	gap.X.Label.Text, gap.Y.Label.Text = "step", "gap (%)"
	gap.Add(plotter.NewGrid())
	var panels []*plot.Plot
	for panel, name := range configs {
		p := plot.New()
		p.Title.Text = titles[name]
		p.X.Label.Text, p.Y.Label.Text = "step", "loss"
		var ref *Curve // the config's fp32 run, which the gaps are taken against
		for i, c := range byConfig[name] {
			if c.Precision == "fp32" {
				ref = &byConfig[name][i]
			}
		}
		for i, c := range byConfig[name] {
			col := palette[i%len(palette)]
			train := make(plotter.XYs, len(c.Loss))
			for s, l := range c.Loss {
				train[s] = plotter.XY{X: float64(s + 1), Y: l}
			}
			tl, err := plotter.NewLine(train)
			if err != nil {
				return err
			}
			tl.Color, tl.Width = faded(col), vg.Points(0.6)
			el, ep, err := plotter.NewLinePoints(evalXYs(c, func(_ int, l float64) float64 { return l }))
			if err != nil {
				return err
			}
			el.Color, ep.Color, el.Width = col, col, vg.Points(1.5)
			p.Add(tl, el, ep)
			p.Legend.Add(c.Label+" train", tl)
			p.Legend.Add(c.Label+" eval", el, ep)
			if c.Precision == "fp32" || ref == nil || len(ref.EvalLoss) < len(c.EvalLoss) {
				continue
			}
			gl, gp, err := plotter.NewLinePoints(evalXYs(c, func(j int, l float64) float64 { return 100 * (l/ref.EvalLoss[j] - 1) }))
			if err != nil {
				return err
			}
			// In the gap panel the colour tells the runs apart and the dashes the recipes.
			gl.Color = palette[panel%len(palette)]
			gp.Color = gl.Color
			gl.Dashes = [][]vg.Length{nil, {vg.Points(4), vg.Points(2)}}[i%2]
			gap.Add(gl, gp)
			gap.Legend.Add(titles[name]+" "+c.Label, gl, gp)
		}
		p.Legend.Top = true
		panels = append(panels, p)
	}
	// The ±1 % band of the parity aim (issue 5), dashed grey; the legend goes below the
	// curves' usual range.
	for _, y := range []float64{-1, 1} {
		l, err := plotter.NewLine(plotter.XYs{{X: gap.X.Min, Y: y}, {X: gap.X.Max, Y: y}})
		if err != nil {
			return err
		}
		l.Color, l.Dashes = color.Gray{Y: 150}, []vg.Length{vg.Points(2), vg.Points(2)}
		gap.Add(l)
	}
	panels = append(panels, gap)

	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := plotgrid.Write(f, [][]*plot.Plot{panels}, 4*vg.Inch); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// runName names the run that c is one precision of, for grouping and for the figures:
// key is its config file and every override that is not about precision, so that the
// fp32 and fp8 runs of one data order and batch share a panel and the gaps are taken
// against that run's fp32 curve; title is the config's name and the overrides that tell
// the parity runs apart (data order, global batch).
func runName(c Curve) (key, title string) {
	title = strings.TrimSuffix(filepath.Base(c.Config), ".yaml")
	key = c.Config
	for _, s := range c.Sets {
		k, v, _ := strings.Cut(s, "=")
		if k == "train.precision" || strings.HasPrefix(k, "train.fp8.") {
			continue
		}
		key += " " + s
		switch k {
		case "data.shuffle_seed":
			title += " order " + v
		case "train.global_batch":
			title += " batch " + v
		}
	}
	return key, title
}

// evalXYs are c's evaluations as (step, f(index, loss)).
func evalXYs(c Curve, f func(int, float64) float64) plotter.XYs {
	xy := make(plotter.XYs, len(c.EvalLoss))
	for j, l := range c.EvalLoss {
		xy[j] = plotter.XY{X: float64(c.EvalSteps[j]), Y: f(j, l)}
	}
	return xy
}

func faded(c color.Color) color.Color {
	r, g, b, _ := c.RGBA()
	return color.NRGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), 90}
}
