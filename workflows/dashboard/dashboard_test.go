package dashboard_test

import (
	"bufio"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herdml/herd/internal/ui"
	"github.com/herdml/herd/trainer/history"
	"github.com/herdml/herd/workflows/dashboard"
	"github.com/herdml/herd/workflows/dashboard/dashtest"
)

// The tests run the dashboard over a real embedded Temporal server and real tiny runs,
// held at a step (dashtest) so that what they look at stays put.

// run is the part of /api/runs' RUN the tests read.
type run struct {
	Name     string   `json:"name"`
	State    string   `json:"state"`
	Workflow string   `json:"workflow"`
	Step     int64    `json:"step"`
	Dir      string   `json:"dir"`
	EvalLoss *float64 `json:"eval_loss"`
	Sweep    string   `json:"sweep"`
}

func TestAPI(t *testing.T) {
	e := dashtest.Start(t, dashboard.Options{TemporalUI: "http://127.0.0.1:8233", StatusEvery: 200 * time.Millisecond, HistoryEvery: 100 * time.Millisecond})
	e.Hold("held", 2)
	e.StartRun(t, "held")
	e.WaitHeld(t, "held")
	waitFor(t, "run held to show step 2", func() bool { return status(t, e.URL, "held").Step == 2 })

	t.Run("list and detail", func(t *testing.T) { listAndDetail(t, e) })
	t.Run("history", func(t *testing.T) { historyRoute(t, e) })
	t.Run("malformed requests change nothing", func(t *testing.T) { malformed(t, e) })
	t.Run("sweep", func(t *testing.T) { sweepRoutes(t, e) })
	t.Run("events", func(t *testing.T) { events(t, e) })
	t.Run("control", func(t *testing.T) { control(t, e) })
	t.Run("streams are bounded and end with their client", func(t *testing.T) { streamBound(t, e) })
}

func streamBound(t *testing.T, e *dashtest.Env) {
	srv := httptest.NewServer(ui.Handler(dashboard.New(e.Conn.Client, dashboard.Options{MaxStreams: 1}), ui.Options{Loopback: true}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/events")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the first stream: %v %v", resp, err)
	}
	if code, body := request(t, "GET", srv.URL+"/api/events?name=held", nil); code != 503 {
		t.Errorf("a stream past the bound: %d %s, want 503", code, body)
	}
	resp.Body.Close() // the client goes: its stream ends and frees its place
	waitFor(t, "a stream to open after the first closed", func() bool {
		r, err := http.Get(srv.URL + "/api/events")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		return r.StatusCode == 200
	})
}

func listAndDetail(t *testing.T, e *dashtest.Env) {
	var runs struct {
		Runs       []run  `json:"runs"`
		Sweeps     []any  `json:"sweeps"`
		TemporalUI string `json:"temporal_ui"`
		Now        string `json:"now"`
	}
	getJSON(t, e.URL+"/api/runs", 200, &runs)
	i := slices.IndexFunc(runs.Runs, func(r run) bool { return r.Name == "held" })
	if i < 0 || runs.Runs[i].State != "running" || runs.Runs[i].Workflow != "Running" || runs.Runs[i].Sweep != "" || runs.Runs[i].EvalLoss != nil {
		t.Errorf("/api/runs: %+v", runs.Runs)
	}
	if runs.TemporalUI != "http://127.0.0.1:8233" || runs.Sweeps == nil {
		t.Errorf("/api/runs: temporal_ui %q, sweeps %v", runs.TemporalUI, runs.Sweeps)
	}
	if _, err := time.Parse(time.RFC3339, runs.Now); err != nil {
		t.Errorf("/api/runs: now %q: %v", runs.Now, err)
	}

	var detail struct {
		Status      run               `json:"status"`
		Config      map[string]any    `json:"config"`
		ConfigYAML  string            `json:"config_yaml"`
		MetaP       []json.RawMessage `json:"metap"`
		Checkpoints []string          `json:"checkpoints"`
		Lineage     []any             `json:"lineage"`
	}
	getJSON(t, e.URL+"/api/run?name=held", 200, &detail)
	if detail.Status.Name != "held" || detail.Config["name"] != "held" || !strings.Contains(detail.ConfigYAML, "d_model: 16") ||
		!slices.Contains(detail.Checkpoints, "step-00000002") || detail.Lineage == nil {
		t.Errorf("/api/run: %+v", detail)
	}
	// The MetaP table is `herd metap table`'s: one entry per tensor.
	var first map[string]any
	if len(detail.MetaP) == 0 || json.Unmarshal(detail.MetaP[0], &first) != nil {
		t.Fatalf("/api/run: metap %s", detail.MetaP)
	}
	for _, k := range []string{"name", "class", "shape", "init_std", "lr", "weight_decay", "eps", "mult"} {
		if _, ok := first[k]; !ok {
			t.Errorf("/api/run: metap entry %v has no %q", first, k)
		}
	}
	getJSON(t, e.URL+"/api/run?name=nosuch", 404, nil)
}

// historyBody is the part of /api/history the tests read.
type historyBody struct {
	Name     string     `json:"name"`
	Rows     int        `json:"rows"`
	Reset    bool       `json:"reset"`
	Step     []int64    `json:"step"`
	Loss     []*float64 `json:"loss"`
	EvalLoss []*float64 `json:"eval_loss"`
	LR       []*float64 `json:"lr"`
}

// writeHistory replaces the history of the run in dir by one that keeps its rows up to
// keep and then has steps, each with loss 100+step (a value no run trains to), an eval
// on even steps, at time at.
func writeHistory(t *testing.T, dir string, keep int64, at time.Time, steps ...int64) {
	t.Helper()
	w, err := history.Open(dir, keep)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		eval := math.NaN()
		if s%2 == 0 {
			eval = 50 + float64(s)
		}
		r := history.Row{Step: s, Tokens: 16 * s, Time: at.Add(time.Duration(s) * time.Second), Loss: 100 + float64(s), LR: 1e-3, GradNorm: 1,
			TokensPerS: 10, StepSeconds: 1, EvalLoss: eval, EvalBPB: math.NaN(), ExpertLoad: [][]float64{{0.25, 0.75}},
			FP8AmaxMax: math.NaN(), FP8ScaleMin: math.NaN(), FP8ScaleMax: math.NaN()}
		if err := w.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func historyRoute(t *testing.T, e *dashtest.Env) {
	// A run held before its first step has no history rows: an empty one, not an error.
	release := e.Hold("fresh", 0)
	defer release()
	e.StartRun(t, "fresh")
	e.WaitHeld(t, "fresh")
	var h historyBody
	getJSON(t, e.URL+"/api/history?name=fresh", 200, &h)
	if h.Name != "fresh" || h.Rows != 0 || h.Step == nil || len(h.Step) != 0 {
		t.Errorf("history of a run with none: %+v", h)
	}

	dir := status(t, e.URL, "held").Dir
	writeHistory(t, dir, 0, time.Now(), 1, 2, 3, 4)
	getJSON(t, e.URL+"/api/history?name=held", 200, &h)
	if h.Rows != 4 || !slices.Equal(h.Step, []int64{1, 2, 3, 4}) || *h.Loss[2] != 103 || h.EvalLoss[0] != nil || *h.EvalLoss[1] != 52 || len(h.LR) != 4 {
		t.Errorf("history: %+v", h)
	}
	getJSON(t, e.URL+"/api/history?name=held&after=2", 200, &h)
	if h.Rows != 2 || !slices.Equal(h.Step, []int64{3, 4}) {
		t.Errorf("history after=2: %+v", h)
	}
	// The runs table shows the last eval.
	waitFor(t, "eval_loss 54 in /api/runs", func() bool {
		r, ok := listed(t, e.URL, "held")
		return ok && r.EvalLoss != nil && *r.EvalLoss == 54
	})
}

func sweepRoutes(t *testing.T, e *dashtest.Env) {
	e.HoldAll(2)
	e.StartSweep(t, "sw", 3)
	for i := range 3 {
		e.WaitHeld(t, "sw-trial-"+string(rune('0'+i)))
	}
	var sw struct {
		Name   string `json:"name"`
		Trials []struct {
			ID     string   `json:"id"`
			Params []string `json:"params"`
		} `json:"trials"`
		Best   int              `json:"best"`
		Params map[string][]any `json:"params"`
	}
	getJSON(t, e.URL+"/api/sweep?name=sw", 200, &sw)
	lrs := sw.Params["train.optim.lr"]
	if sw.Name != "sw" || len(sw.Trials) != 3 || sw.Trials[1].ID != "sw/trial-1" || sw.Best != -1 || len(lrs) != 3 {
		t.Fatalf("/api/sweep: %+v", sw)
	}
	for _, v := range lrs {
		if _, ok := v.(float64); !ok {
			t.Errorf("/api/sweep: params %v: want numbers", lrs)
		}
	}
	getJSON(t, e.URL+"/api/sweep?name=held", 404, nil) // a run, not a sweep
	waitFor(t, "the sweep and its trials in /api/runs", func() bool {
		var b struct {
			Runs   []run `json:"runs"`
			Sweeps []struct {
				Name   string `json:"name"`
				Trials int    `json:"trials"`
				Best   int    `json:"best"`
			} `json:"sweeps"`
		}
		getJSON(t, e.URL+"/api/runs", 200, &b)
		trials := 0
		for _, r := range b.Runs {
			if r.Sweep == "sw" {
				trials++
			}
		}
		return len(b.Sweeps) == 1 && b.Sweeps[0].Name == "sw" && b.Sweeps[0].Trials == 3 && b.Sweeps[0].Best == -1 && trials == 3
	})
	ev := openEvents(t, e.URL+"/api/events?sweep=sw")
	ev.wait(t, "sweep", func(b []byte) bool { return strings.Contains(string(b), `"sw/trial-2"`) })
}

func events(t *testing.T, e *dashtest.Env) {
	dir := status(t, e.URL, "held").Dir
	at := time.Now().Add(time.Hour)
	writeHistory(t, dir, 0, at, 1, 2)
	runs := openEvents(t, e.URL+"/api/events")
	runs.wait(t, "runs", func(b []byte) bool { return strings.Contains(string(b), `"name":"held"`) })

	ev := openEvents(t, e.URL+"/api/events?name=held")
	ev.wait(t, "status", func(b []byte) bool { return strings.Contains(string(b), `"state":"running"`) })
	ev.history(t, func(h historyBody) bool { return !h.Reset && slices.Equal(h.Step, []int64{1, 2}) })
	// New rows are pushed as they land, and only they.
	writeHistory(t, dir, 2, at, 3)
	ev.history(t, func(h historyBody) bool { return !h.Reset && slices.Equal(h.Step, []int64{3}) && *h.Loss[0] == 103 })
	// A history cut back (a resume from step 1) replaces what the page holds from there.
	writeHistory(t, dir, 1, at.Add(time.Minute), 2)
	ev.history(t, func(h historyBody) bool { return h.Reset && slices.Equal(h.Step, []int64{2}) })
	// A status change is pushed: pause the run, then resume it.
	post(t, e.URL+"/api/control?name=held&action=pause", 200)
	ev.wait(t, "status", func(b []byte) bool { return strings.Contains(string(b), `"state":"paused"`) })
	runs.wait(t, "runs", func(b []byte) bool { return strings.Contains(string(b), `"state":"paused"`) })
	post(t, e.URL+"/api/control?name=held&action=resume", 200)
	ev.wait(t, "status", func(b []byte) bool { return strings.Contains(string(b), `"state":"running"`) })
	e.WaitHeld(t, "held")
}

func control(t *testing.T, e *dashtest.Env) {
	var resp struct {
		Status run `json:"status"`
	}
	decode(t, post(t, e.URL+"/api/control?name=held&action=pause", 200), &resp)
	if resp.Status.Name != "held" || resp.Status.State != "paused" {
		t.Errorf("pause: %+v", resp.Status)
	}
	if s := status(t, e.URL, "held"); s.State != "paused" {
		t.Errorf("after pause: state %q", s.State)
	}
	decode(t, post(t, e.URL+"/api/control?name=held&action=resume", 200), &resp)
	if resp.Status.State != "running" {
		t.Errorf("resume: %+v", resp.Status)
	}
	e.WaitHeld(t, "held")
	post(t, e.URL+"/api/control?name=nosuch&action=stop", 409) // no running run by this name
}

// malformed sends each of must-show 4's malformed requests to a dashboard that a
// non-loopback address would serve (the access decision is the listener's; here it is
// set), and checks the answer and that the held run is as it was.
func malformed(t *testing.T, e *dashtest.Env) {
	srv := httptest.NewServer(ui.Handler(e.API, ui.Options{Token: "s3cret"}))
	defer srv.Close()
	before := status(t, e.URL, "held")
	bearer := http.Header{"Authorization": {"Bearer s3cret"}}
	for _, c := range []struct {
		method, path string
		header       http.Header
		want         int
	}{
		{"GET", "/api/runs", nil, 401},
		{"POST", "/api/control?name=held&action=stop", nil, 401},
		{"POST", "/api/control?name=held&action=stop", http.Header{"Authorization": {"Bearer wrong"}}, 401},
		{"POST", "/api/control?name=held&action=stop", http.Header{"Cookie": {ui.CookieName + "=wrong"}}, 401},
		{"GET", "/api/run?name=../../etc/passwd", bearer, 400},
		{"GET", "/api/run?name=a%20b", bearer, 400},
		{"GET", "/api/run?name=", bearer, 400},
		{"GET", "/api/run?name=a/b/c", bearer, 400},
		{"GET", "/api/run", bearer, 400},
		{"GET", "/api/run?name=held&name=other", bearer, 400},
		{"GET", "/api/history?name=held&after=-1", bearer, 400},
		{"GET", "/api/history?name=held&after=x", bearer, 400},
		{"GET", "/api/events?name=held&sweep=sw", bearer, 400},
		{"GET", "/api/runs?x=1", bearer, 400},
		{"GET", "/api/run?name=held&pad=" + strings.Repeat("x", ui.MaxQuery), bearer, 414},
		{"POST", "/api/control?name=held&action=delete", bearer, 400},
		{"POST", "/api/control?name=held", bearer, 400},
		{"GET", "/api/control?name=held&action=stop", bearer, 405},
		{"POST", "/api/control?name=..%2fheld&action=stop", bearer, 400},
		{"GET", "/api/nosuch", bearer, 404},
		{"GET", "/static/../../../etc/passwd", nil, 400},
		{"GET", "/static/..%2f..%2fdashboard.go", nil, 400},
		{"GET", "/static/vendor", nil, 404},
		{"GET", "/api/run?name=held", bearer, 200},
	} {
		code, body := request(t, c.method, srv.URL+c.path, c.header)
		if code != c.want {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, code, body, c.want)
		}
		if code >= 400 && code != 404 && !strings.Contains(body, `"error"`) {
			t.Errorf("%s %s: body %s, want a JSON error", c.method, c.path, body)
		}
	}
	after := status(t, e.URL, "held")
	if after.State != before.State || after.Step != before.Step || after.Workflow != before.Workflow {
		t.Errorf("the run changed: %+v, was %+v", after, before)
	}
}

// status reads a run's status through /api/run.
func status(t *testing.T, base, name string) run {
	t.Helper()
	var d struct {
		Status run `json:"status"`
	}
	getJSON(t, base+"/api/run?name="+url.QueryEscape(name), 200, &d)
	return d.Status
}

// listed is run name as /api/runs lists it.
func listed(t *testing.T, base, name string) (run, bool) {
	var b struct {
		Runs []run `json:"runs"`
	}
	getJSON(t, base+"/api/runs", 200, &b)
	for _, r := range b.Runs {
		if r.Name == name {
			return r, true
		}
	}
	return run{}, false
}

func request(t *testing.T, method, u string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	if req.Header == nil {
		req.Header = http.Header{}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(req.URL.Path, "/api/") && ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, u, ct)
	}
	return resp.StatusCode, string(b)
}

func getJSON(t *testing.T, u string, want int, v any) {
	t.Helper()
	code, body := request(t, "GET", u, nil)
	if code != want {
		t.Fatalf("GET %s: %d %s, want %d", u, code, body, want)
	}
	if v != nil {
		decode(t, body, v)
	}
}

func post(t *testing.T, u string, want int) string {
	t.Helper()
	code, body := request(t, "POST", u, nil)
	if code != want {
		t.Fatalf("POST %s: %d %s, want %d", u, code, body, want)
	}
	return body
}

func decode(t *testing.T, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("%v in %s", err, body)
	}
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// eventStream reads an open /api/events stream.
type eventStream struct {
	ch chan event
}

type event struct {
	name string
	data []byte
}

func openEvents(t *testing.T, u string) *eventStream {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	t.Cleanup(func() { resp.Body.Close() })
	s := &eventStream{ch: make(chan event, 1024)}
	go func() {
		defer close(s.ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 16<<20)
		var ev event
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = []byte(strings.TrimPrefix(line, "data: "))
			case line == "" && ev.name != "":
				s.ch <- ev
				ev = event{}
			}
		}
	}()
	return s
}

// wait reads events until one named name satisfies cond, failing after a minute.
func (s *eventStream) wait(t *testing.T, name string, cond func([]byte) bool) {
	t.Helper()
	timeout := time.After(time.Minute)
	for !cond(s.next(t, name, timeout)) {
	}
}

// history waits for the next history event, which must satisfy cond.
func (s *eventStream) history(t *testing.T, cond func(historyBody) bool) {
	t.Helper()
	data := s.next(t, "history", time.After(time.Minute))
	var h historyBody
	decode(t, string(data), &h)
	if !cond(h) {
		t.Fatalf("history event %s is not the one wanted", data)
	}
}

// next returns the data of the next event named name, skipping others, failing if the
// stream ends or timeout fires first.
func (s *eventStream) next(t *testing.T, name string, timeout <-chan time.Time) []byte {
	t.Helper()
	for {
		select {
		case ev, ok := <-s.ch:
			if !ok {
				t.Fatalf("the stream ended before a %s event", name)
			}
			if ev.name == name {
				return ev.data
			}
		case <-timeout:
			t.Fatalf("no %s event as wanted within a minute", name)
		}
	}
}
