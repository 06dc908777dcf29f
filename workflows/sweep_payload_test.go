package workflows

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/proto"

	"github.com/herdml/herd/trainer/config"
	"github.com/herdml/herd/workflows/sweep"
)

// payloadLimit is Temporal's default limit on one payload (a workflow's input, the input
// of a ContinueAsNew), beyond which the server refuses the command.
const payloadLimit = 2 << 20

// A sweep of a thousand trials starts and continues as new with payloads far below
// Temporal's limit, measured as the SDK encodes them: the input carries the base config
// once and each trial's values, not each trial's whole config (1.2 MB of input, 1.5 MB
// with the state a ContinueAsNew adds); what remains is mostly that state, the trials'
// progress. And each trial still trains the config herd gave it before: the base file with
// the sweep's overrides, the trial's values and its name, relative paths (the base's and a
// trial's own) made absolute in the folder the sweep was started from.
func TestSweepPayloadSize(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "base.yaml"), []byte(MicroYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	const spec = `name: big
base: base.yaml
set: [train.checkpoint.dir=runs, "data.train=train/*.go"]
space:
  train.optim.lr: {log_uniform: [1.0e-4, 1.0e-1], points: 25}
  train.schedule.warmup: {values: [0, 2, 4, 8, 16]}
  data.eval: {values: ["a/*.go", "b/*.go"]}
  train.optim.weight_decay: {values: [0, 0.1, 0.2, 0.3]}
metric: loss
max_concurrent: 4
`
	if err := os.WriteFile(filepath.Join(dir, "big.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := sweep.Load(filepath.Join(dir, "big.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Trials) != 1000 {
		t.Fatalf("%d trials, want 1000", len(s.Trials))
	}
	s.Source.Dir = dir // what `herd sweep` started in dir sets
	in := NewSweepInput(s)
	in.EventsPerRun = in.MaxConcurrent // continue as new after the first round of legs

	// Every trial's config, as the workflow makes it, is the one the client made before.
	t.Chdir(dir)
	legacy := in
	legacy.Base, legacy.Trials = nil, nil
	run := &sweepRun{in: in}
	for i, tr := range in.Trials {
		want := configBefore(t, s, tr.Trial)
		got, err := run.config(i)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("trial %d (%v):\n got %+v\nwant %+v", i, tr.Params, got, want)
		}
		legacy.Trials = append(legacy.Trials, SweepTrial{Trial: tr.Trial, Config: &want})
	}

	// Legs until the sweep drains (a stub TrainRun that records its config and trains all
	// steps at once), then ContinueAsNew with the state of all 1000 trials.
	var env testsuite.WorkflowTestSuite
	e := env.NewTestWorkflowEnvironment()
	e.RegisterWorkflowWithOptions(Sweep, workflow.RegisterOptions{Name: SweepWorkflow})
	trained := map[string]config.Run{}
	e.RegisterWorkflowWithOptions(func(ctx workflow.Context, in RunInput) (Progress, error) {
		trained[in.Config.Name] = in.Config
		steps := int64(in.Config.Train.Steps)
		return Progress{Name: in.Config.Name, State: StateCompleted, Step: steps, Steps: steps, Loss: 1}, nil
	}, workflow.RegisterOptions{Name: WorkflowName})
	e.ExecuteWorkflow(SweepWorkflow, in)
	var can *workflow.ContinueAsNewError
	if !e.IsWorkflowCompleted() || !errors.As(e.GetWorkflowError(), &can) {
		t.Fatalf("sweep ended with %v, want ContinueAsNew", e.GetWorkflowError())
	}
	if len(trained) < in.MaxConcurrent || len(trained) == len(in.Trials) {
		t.Fatalf("%d trials trained before continuing as new, want a round of legs", len(trained))
	}
	for i := range len(trained) { // in index order
		name := sweep.TrialName(s.Name, i)
		got, ok := trained[name]
		if want := configBefore(t, s, in.Trials[i].Trial); !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("%s trained %+v\nwant %+v", name, got, want)
		}
	}

	sizes := map[string]int{"input": payloadSize(t, in), "continue-as-new input": proto.Size(can.Input),
		"input with whole configs (before)": payloadSize(t, legacy)}
	t.Logf("payload bytes for 1000 trials: %v (limit %d)", sizes, payloadLimit)
	for _, k := range []string{"input", "continue-as-new input"} {
		if sizes[k] > payloadLimit/4 {
			t.Errorf("%s: %d bytes, want at most a quarter of Temporal's limit (%d)", k, sizes[k], payloadLimit/4)
		}
	}
}

// A trial whose config the worker cannot make (here a value out of bounds, which the
// client would have refused) ends in error with the reason, and starts no run; the sweep
// goes on to its end.
func TestSweepTrialConfigError(t *testing.T) {
	in := SweepInput{Name: "bad", Base: &sweep.BaseSource{Name: "base.yaml", Src: []byte(MicroYAML)},
		Trials: []SweepTrial{{Trial: sweep.Trial{Index: 0, Params: []string{"train.optim.lr=-1"}, Steps: 60}}},
		Metric: "loss", Minimize: true, MaxConcurrent: 1}
	var env testsuite.WorkflowTestSuite
	e := env.NewTestWorkflowEnvironment()
	e.RegisterWorkflowWithOptions(Sweep, workflow.RegisterOptions{Name: SweepWorkflow})
	e.RegisterWorkflowWithOptions(func(ctx workflow.Context, in RunInput) (Progress, error) {
		t.Errorf("run %s started", in.Config.Name)
		return Progress{}, nil
	}, workflow.RegisterOptions{Name: WorkflowName})
	e.ExecuteWorkflow(SweepWorkflow, in)
	var p SweepProgress
	if err := e.GetWorkflowResult(&p); err != nil {
		t.Fatal(err)
	}
	if tr := p.Trials[0]; p.State != StateCompleted || tr.State != TrialError || !strings.Contains(tr.Error, "trial 0 (train.optim.lr=-1)") {
		t.Fatalf("sweep %s, trial %+v; want completed with trial 0 in error, naming it", p.State, tr)
	}
}

// configBefore is trial tr's config as herd made it before sweeps carried the base config
// once: parsed by the client, which then made its relative paths absolute in its
// working folder (filepath.Abs).
func configBefore(t *testing.T, s *sweep.Sweep, tr sweep.Trial) config.Run {
	t.Helper()
	sets := slices.Concat(s.Source.Sets, tr.Params, []string{"name=" + sweep.TrialName(s.Name, tr.Index)})
	cfg, err := config.Parse(s.Source.Name, s.Source.Src, sets)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*string{&cfg.Data.Train, &cfg.Data.Eval, &cfg.Train.Checkpoint.Dir} {
		if *p != "" && !filepath.IsAbs(*p) && !strings.HasPrefix(*p, "$") && !strings.Contains(*p, "://") {
			if *p, err = filepath.Abs(*p); err != nil {
				t.Fatal(err)
			}
		}
	}
	return cfg
}

// payloadSize is the size of v encoded as one workflow input by the SDK's default data
// converter.
func payloadSize(t *testing.T, v any) int {
	t.Helper()
	p, err := converter.GetDefaultDataConverter().ToPayloads(v)
	if err != nil {
		t.Fatal(err)
	}
	return proto.Size(p)
}
