// Package dashboard is the web dashboard's API over Temporal and the runs' metrics
// histories: the runs and sweeps, one run's status, config, MetaP table and history, one
// sweep, the pause/resume/stop controls, and Server-Sent Events that push what changes.
// docs/dashboard.md is its reference. Package internal/ui serves it with the page, the
// access rule and the request limits.
//
// Every request is checked (run names, actions, numbers, methods) before anything is
// asked of Temporal, so that a malformed request changes nothing.
package dashboard

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	sdkclient "go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"gopkg.in/yaml.v3"

	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/internal/ui"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/metap"
	"github.com/herdml/herd/trainer/config"
	"github.com/herdml/herd/workflows"
	"github.com/herdml/herd/workflows/client"
)

// Options configure an API.
type Options struct {
	// TemporalUI is the address of a Temporal Web UI for these workflows, shown as a
	// link; empty when there is none.
	TemporalUI string
	// MaxStreams bounds the event streams open at once (each polls Temporal); 0 = 64.
	// One more is refused with 503.
	MaxStreams int
	// StatusEvery is how often a stream polls Temporal (runs, a run's status, a sweep),
	// and HistoryEvery how often it looks at a run's history file; 0 = 1s and 500ms.
	StatusEvery, HistoryEvery time.Duration
}

// API is the dashboard's /api/ handler.
type API struct {
	c       sdkclient.Client
	o       Options
	evals   evalCache
	streams chan struct{} // one token per open event stream

	mu     sync.Mutex // guards runs: one listing at a time, shared by every caller
	runs   runsBody
	listed time.Time
	took   time.Duration // how long the last listing took
}

// New returns the API over the Temporal client c.
func New(c sdkclient.Client, o Options) *API {
	if o.MaxStreams <= 0 {
		o.MaxStreams = 64
	}
	if o.StatusEvery <= 0 {
		o.StatusEvery = time.Second
	}
	if o.HistoryEvery <= 0 {
		o.HistoryEvery = 500 * time.Millisecond
	}
	return &API{c: c, o: o, streams: make(chan struct{}, o.MaxStreams), evals: evalCache{m: map[string]evalEntry{}}}
}

// ServeHTTP routes /api/ requests.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route, ok := routes[r.URL.Path]
	if !ok {
		ui.Error(w, http.StatusNotFound, "no such API route: "+r.URL.Path)
		return
	}
	if r.Method != route.method && !(route.method == http.MethodGet && r.Method == http.MethodHead) {
		w.Header().Set("Allow", route.method)
		ui.Error(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s takes %s, not %s", r.URL.Path, route.method, r.Method))
		return
	}
	q, err := parseQuery(r, route)
	if err != nil {
		ui.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	route.serve(a, w, r, q)
}

// route is one API endpoint: its method, the parameters it needs and those it may take,
// and its handler.
type route struct {
	method             string
	required, optional []string
	serve              func(a *API, w http.ResponseWriter, r *http.Request, q query)
}

var routes = map[string]route{
	"/api/runs":    {http.MethodGet, nil, nil, (*API).serveRuns},
	"/api/run":     {http.MethodGet, []string{"name"}, nil, (*API).serveRun},
	"/api/history": {http.MethodGet, []string{"name"}, []string{"after"}, (*API).serveHistory},
	"/api/sweep":   {http.MethodGet, []string{"name"}, nil, (*API).serveSweep},
	"/api/events":  {http.MethodGet, nil, []string{"name", "sweep"}, (*API).serveEvents},
	"/api/control": {http.MethodPost, []string{"name", "action"}, nil, (*API).serveControl},
}

// query is a request's checked parameters.
type query struct {
	name, sweep, action string
	after               int64 // -1 when not given
}

// validName reports whether name is a workflow ID the dashboard reads: a run name (the
// rule of config's name key) or a sweep name, or a sweep's trial SWEEP/trial-N or
// transfer target SWEEP/target: at most two parts.
func validName(name string) bool {
	parts := strings.Split(name, "/")
	if len(parts) > 2 {
		return false
	}
	for _, p := range parts {
		if !config.ValidName(p) {
			return false
		}
	}
	return true
}

// actions maps the control actions to workflows' update names.
var actions = map[string]string{"pause": workflows.UpdatePause, "resume": workflows.UpdateResume, "stop": workflows.UpdateStop}

// parseQuery checks r's query against rt's parameters: each known and given at most
// once, the required ones given, names valid, numbers numbers, actions known.
func parseQuery(r *http.Request, rt route) (query, error) {
	q := query{after: -1}
	vals := r.URL.Query()
	allowed := append(slices.Clone(rt.required), rt.optional...)
	for k, v := range vals {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return q, fmt.Errorf("%s takes no parameters, got %q", r.URL.Path, k)
			}
			return q, fmt.Errorf("unknown parameter %q: %s takes %s", k, r.URL.Path, strings.Join(allowed, ", "))
		}
		if len(v) != 1 {
			return q, fmt.Errorf("parameter %q given %d times", k, len(v))
		}
	}
	for _, k := range rt.required {
		if !vals.Has(k) {
			return q, fmt.Errorf("%s needs the parameter %q", r.URL.Path, k)
		}
	}
	for _, k := range []string{"name", "sweep"} {
		if v := vals.Get(k); vals.Has(k) && !validName(v) {
			return q, fmt.Errorf("%s %q: want a run or sweep name (A-Z a-z 0-9 . _ -, starting with a letter or digit, at most 100; trials SWEEP/trial-N)", k, v)
		}
	}
	q.name, q.sweep = vals.Get("name"), vals.Get("sweep")
	if q.name != "" && q.sweep != "" {
		return q, errors.New("give name or sweep, not both")
	}
	if vals.Has("after") {
		n, err := strconv.ParseInt(vals.Get("after"), 10, 64)
		if err != nil || n < 0 {
			return q, fmt.Errorf("after %q: want a step, a whole number >= 0", vals.Get("after"))
		}
		q.after = n
	}
	if vals.Has("action") {
		q.action = vals.Get("action")
		if _, ok := actions[q.action]; !ok {
			return q, fmt.Errorf("action %q: want pause, resume or stop", q.action)
		}
	}
	return q, nil
}

// Run is a run as the dashboard lists it: client.Status, the last eval loss in its
// history (nil when none) and the sweep it is a trial of ("" when none).
type Run struct {
	client.Status
	EvalLoss *float64 `json:"eval_loss"`
	Sweep    string   `json:"sweep"`
}

// Sweep is a sweep as the runs page lists it.
type Sweep struct {
	Name       string   `json:"name"`
	State      string   `json:"state"`
	Metric     string   `json:"metric"`
	Trials     int      `json:"trials"`
	Completed  int      `json:"completed"`
	Best       int      `json:"best"`
	BestMetric *float64 `json:"best_metric"`
}

// runsBody is /api/runs.
type runsBody struct {
	Runs       []Run   `json:"runs"`
	Sweeps     []Sweep `json:"sweeps"`
	TemporalUI string  `json:"temporal_ui"`
	Now        string  `json:"now"`
}

// run completes a Status into a Run. A run whose workflow ended without saying
// (terminated, timed out) has the workflow's status as its state, as `herd ls` shows.
func (a *API) run(s client.Status) Run {
	if s.State == "" || (s.Workflow != "Running" && s.State == workflows.StateRunning) {
		s.State = strings.ToLower(s.Workflow)
	}
	r := Run{Status: s, EvalLoss: a.evals.last(s.Dir)}
	if sw, _, ok := strings.Cut(s.Name, "/"); ok {
		r.Sweep = sw
	}
	return r
}

// listRuns lists the runs and sweeps. Callers within half of StatusEvery of the last
// listing share it (a page open in several tabs, the event streams and /api/runs), so
// that the number of viewers does not multiply the calls to Temporal; and within twice
// the time that listing took, so that the dashboard keeps a server busy with many
// running runs (one call each) at most a third of the time.
func (a *API) listRuns(ctx context.Context) (runsBody, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if time.Since(a.listed) < max(a.o.StatusEvery/2, 2*a.took) {
		return a.runs, nil
	}
	start := time.Now()
	statuses, err := client.List(ctx, a.c)
	if err != nil {
		return runsBody{}, err
	}
	sweeps, err := a.listSweeps(ctx)
	if err != nil {
		return runsBody{}, err
	}
	b := runsBody{Runs: make([]Run, len(statuses)), Sweeps: sweeps, TemporalUI: a.o.TemporalUI}
	for i, s := range statuses {
		b.Runs[i] = a.run(s)
	}
	a.runs, a.listed, a.took = b, time.Now(), time.Since(start)
	return b, nil
}

// listSweeps lists every Sweep workflow from visibility, with its progress from its memo.
func (a *API) listSweeps(ctx context.Context) ([]Sweep, error) {
	out := []Sweep{}
	var token []byte
	for {
		resp, err := a.c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query:         fmt.Sprintf("WorkflowType = '%s'", workflows.SweepWorkflow),
			NextPageToken: token,
		})
		if err != nil {
			return nil, fmt.Errorf("listing sweeps: %w", err)
		}
		for _, e := range resp.GetExecutions() {
			if e.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW {
				continue // an earlier execution of a sweep listed by its latest
			}
			var p workflows.SweepProgress
			if m, ok := e.GetMemo().GetFields()[workflows.MemoProgress]; ok {
				_ = converter.GetDefaultDataConverter().FromPayload(m, &p)
			}
			s := Sweep{Name: e.GetExecution().GetWorkflowId(), State: p.State, Metric: p.Metric, Trials: len(p.Trials), Best: p.Best}
			if p.State == "" || e.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING && p.State == workflows.StateRunning {
				s.State = strings.ToLower(strings.TrimPrefix(e.GetStatus().String(), "WORKFLOW_EXECUTION_STATUS_"))
			}
			if p.Trials == nil {
				s.Best = -1
			}
			for _, t := range p.Trials {
				if t.State == workflows.TrialCompleted {
					s.Completed++
				}
			}
			if s.Best >= 0 && s.Best < len(p.Trials) {
				s.BestMetric = finite(p.Trials[s.Best].Final)
			}
			out = append(out, s)
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out, nil
		}
	}
}

func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func (a *API) serveRuns(w http.ResponseWriter, r *http.Request, _ query) {
	b, err := a.listRuns(r.Context())
	if err != nil {
		serverError(w, err)
		return
	}
	b.Now = time.Now().UTC().Format(time.RFC3339)
	ui.JSON(w, b)
}

// runBody is /api/run.
type runBody struct {
	Status      Run             `json:"status"`
	Config      config.Run      `json:"config"`
	ConfigYAML  string          `json:"config_yaml"`
	MetaP       []metap.Entry   `json:"metap"`
	Checkpoints []string        `json:"checkpoints"`
	Lineage     []config.Change `json:"lineage"`
}

func (a *API) serveRun(w http.ResponseWriter, r *http.Request, q query) {
	s, err := client.GetStatus(r.Context(), a.c, q.name)
	if err != nil {
		notFoundOr(w, err)
		return
	}
	cfg, err := client.RunConfig(r.Context(), a.c, q.name)
	if err != nil {
		serverError(w, err)
		return
	}
	y, err := yaml.Marshal(cfg)
	if err != nil {
		serverError(w, fmt.Errorf("run %s: encoding its config: %w", q.name, err))
		return
	}
	b := runBody{Status: a.run(s), Config: cfg, ConfigYAML: string(y), MetaP: []metap.Entry{},
		Checkpoints: s.Checkpoints, Lineage: s.Lineage}
	// The table the trainer initialises and optimises from, as `herd metap table` prints
	// it; a config that cannot make one (it would not have trained) shows none.
	if tab, err := cfg.MetaPTable(); err == nil {
		b.MetaP = tab.Entries
	}
	if b.Checkpoints == nil {
		b.Checkpoints = []string{}
	}
	if b.Lineage == nil {
		b.Lineage = []config.Change{}
	}
	ui.JSON(w, b)
}

func (a *API) serveHistory(w http.ResponseWriter, r *http.Request, q query) {
	s, err := client.GetStatus(r.Context(), a.c, q.name)
	if err != nil {
		notFoundOr(w, err)
		return
	}
	rows, err := readHistory(a.runDir(r.Context(), s))
	if err != nil {
		serverError(w, err)
		return
	}
	after := q.after
	i := 0
	for i < len(rows) && rows[i].Step <= after {
		i++
	}
	ui.JSON(w, columns(q.name, rows[i:], false))
}

// runDir is the folder of a run's checkpoints and history: its Progress.Dir once a
// segment has ended, and until then where its config says the trainer writes them.
func (a *API) runDir(ctx context.Context, s client.Status) string {
	if s.Dir != "" {
		return s.Dir
	}
	cfg, err := client.RunConfig(ctx, a.c, s.Name)
	if err != nil {
		return ""
	}
	return storage.Join(cfg.Train.Checkpoint.Dir, cfg.Name)
}

// sweepBody is /api/sweep: the sweep's progress and its trials' values by key.
type sweepBody struct {
	workflows.SweepProgress
	Params map[string][]any `json:"params"`
}

func (a *API) sweep(ctx context.Context, name string) (sweepBody, error) {
	p, err := client.GetSweep(ctx, a.c, name)
	if err != nil {
		return sweepBody{}, err
	}
	return sweepBody{SweepProgress: p, Params: params(p.Trials)}, nil
}

// params turns the trials' "key=value" params into one column per key: a number where
// the value parses as one, else the string; null for a trial without the key.
func params(trials []workflows.TrialState) map[string][]any {
	out := map[string][]any{}
	for i, t := range trials {
		for _, kv := range t.Params {
			k, v, _ := strings.Cut(kv, "=")
			col, ok := out[k]
			if !ok {
				col = make([]any, len(trials))
				out[k] = col
			}
			if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
				col[i] = f
			} else {
				col[i] = v
			}
		}
	}
	return out
}

func (a *API) serveSweep(w http.ResponseWriter, r *http.Request, q query) {
	b, err := a.sweep(r.Context(), q.name)
	if err != nil {
		notFoundOr(w, err)
		return
	}
	ui.JSON(w, b)
}

// serveControl sends pause, resume or stop to a running run, as `herd pause`, `herd
// resume` (of a paused or failed run: no changes) and `herd stop` do.
func (a *API) serveControl(w http.ResponseWriter, r *http.Request, q query) {
	var args []any
	if q.action == "resume" {
		args = append(args, workflows.ResumeInput{})
	}
	if _, err := client.Control(r.Context(), a.c, q.name, actions[q.action], args...); err != nil {
		if usererr.Is(err) {
			ui.Error(w, http.StatusConflict, err.Error())
			return
		}
		serverError(w, err)
		return
	}
	s, err := client.GetStatus(r.Context(), a.c, q.name)
	if err != nil {
		notFoundOr(w, err)
		return
	}
	a.mu.Lock()
	a.listed = time.Time{} // the next listing shows the change
	a.mu.Unlock()
	ui.JSON(w, map[string]Run{"status": a.run(s)})
}

// notFoundOr answers a lookup's error: a user error (no such run or sweep) is a 404.
func notFoundOr(w http.ResponseWriter, err error) {
	if usererr.Is(err) {
		ui.Error(w, http.StatusNotFound, err.Error())
		return
	}
	serverError(w, err)
}

func serverError(w http.ResponseWriter, err error) {
	ui.Error(w, http.StatusInternalServerError, err.Error())
}
