package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/herdml/herd/trainer/history"
	"github.com/herdml/herd/workflows"
)

// The dashboard's browser test drives the real page in headless Chromium (Debian's
// `chromium` package, which .ci/run installs; HERD_CHROMIUM names another binary) against
// a real `herd server --ui`, a real worker and real runs. Screenshots of every page go to
// $HERD_ARTIFACTS (or the test's temporary folder, logged); with HERD_UPDATE_SCREENSHOTS=1
// they also replace docs/dashboard/*.png.

// chromium returns the browser the tests drive, skipping the test where there is none.
func chromium(t testing.TB) string {
	t.Helper()
	path := os.Getenv("HERD_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		t.Skipf("no Chromium at %s (install Debian's chromium, or set HERD_CHROMIUM): %v", path, err)
	}
	return path
}

// newTab starts headless Chromium on a fresh profile and returns a tab's context; the
// test's cleanup closes the browser. The flags keep Chromium off the network (a closed
// network makes it hang on its own background connections) and out of a sandbox that a
// container cannot give it.
func newTab(t testing.TB) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	msgs := chromedp.Console(ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	// The page's exceptions and console errors are the test's failures.
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == "error" {
				t.Errorf("page console: %s:%d %s", m.URL, m.Line+1, m)
			}
		}
	}()
	return ctx
}

// evalJS evaluates expr in the tab and returns its value.
func evalJS[T any](t testing.TB, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// waitJS waits until expr (a JS expression) is true in the tab, failing the test with
// what and the value of show after a minute: a bound on a hang, never a timing check.
func waitJS(t testing.TB, ctx context.Context, what, expr, show string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+expr+")"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			got, _ := chromedp.Run(ctx, chromedp.Evaluate[[]byte](show))
			t.Fatalf("waited a minute for %s (%s): %s is %s (%v)", what, expr, show, got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// open navigates the tab to the dashboard's route (a hash route such as "#/run/NAME"),
// loading the page afresh.
func open(t testing.TB, ctx context.Context, base, route string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank"), chromedp.Navigate(base+route)); err != nil {
		t.Fatalf("opening %s%s: %v", base, route, err)
	}
}

// points is the number of x values the chart with id holds (its data-points).
func points(t testing.TB, ctx context.Context, id string) int {
	t.Helper()
	return evalJS[int](t, ctx, fmt.Sprintf(`Number(document.getElementById(%q).dataset.points || 0)`, id))
}

// screenshot saves the whole page as NAME.png among the test's artifacts and, with
// HERD_UPDATE_SCREENSHOTS=1, as docs/dashboard/NAME.png.
func screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dirs := []string{artifacts(t)}
	if os.Getenv("HERD_UPDATE_SCREENSHOTS") == "1" {
		dirs = append(dirs, filepath.Join("..", "..", "docs", "dashboard"))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// artifacts is where a test's screenshots go: $HERD_ARTIFACTS/TEST, or a temporary
// folder that the test logs.
func artifacts(t testing.TB) string {
	if d := os.Getenv("HERD_ARTIFACTS"); d != "" {
		return filepath.Join(d, strings.ReplaceAll(t.Name(), "/", "_"))
	}
	d := filepath.Join(os.TempDir(), "herd-artifacts", strings.ReplaceAll(t.Name(), "/", "_"))
	t.Logf("screenshots in %s", d)
	return d
}

// startServer runs `herd server` in dir with the dashboard on a port the OS picks, and
// returns the Temporal address and the dashboard's URL that it prints.
func startServer(t *testing.T, dir string) (temporal, dashboard string) {
	t.Helper()
	got := startWith(t, dir, nil, []string{"server", "--port", "0", "--state-dir", filepath.Join(dir, "home"), "--ui", "127.0.0.1:0"},
		regexp.MustCompile(`^Temporal server \S+ at (\S+),`), regexp.MustCompile(`dashboard at (http://\S+?)/?$`))
	return got[0], got[1]
}

// startWorker runs `herd worker` against temporal, training up to 8 runs at once, with
// every step first waiting delay (internal/stephook), so that a run trains long enough
// to be watched.
func startWorker(t *testing.T, dir, temporal, delay string) {
	t.Helper()
	startWith(t, dir, []string{"HERD_TEST_STEP_DELAY=" + delay}, []string{"worker", "--temporal", temporal, "--segments", "8"})
}

// submit starts run name of dir's run.yaml on temporal without following it, for
// steps steps with a checkpoint and an eval every 10, with sets (key=value) applied.
func submit(t *testing.T, dir, temporal, name string, steps int, sets ...string) {
	t.Helper()
	args := []string{"run", "run.yaml", "--temporal", temporal, "--detach",
		"--set", "name=" + name, "--set", fmt.Sprintf("train.steps=%d", steps),
		"--set", "train.checkpoint.every=10", "--set", "train.eval.every=10"}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	_, stderr, status := herd(t, dir, args...)
	if status != 0 {
		t.Fatalf("herd run %s --detach: status %d\n%s", name, status, stderr)
	}
}

// runDir is the folder of run name's checkpoints, as `herd status` reports it.
func runDir(t *testing.T, dir, temporal, name string) string {
	t.Helper()
	stdout, stderr, status := herd(t, dir, "status", name, "--temporal", temporal, "--json")
	var p workflows.Progress
	if status != 0 || json.Unmarshal([]byte(stdout), &p) != nil {
		t.Fatalf("herd status %s: status %d\n%s%s", name, status, stdout, stderr)
	}
	return p.Dir
}

// Must-show 1: a run trains under the dashboard's eyes. Its page's loss chart gains
// points while it trains; Pause turns its state to paused, Resume back to running and
// the chart grows again; a second run and the compare view of both, the runs table and
// a small sweep's page follow, each screenshotted.
func TestDashboardInBrowser(t *testing.T) {
	chromium(t)
	dir := tinyRun(t)
	temporal, base := startServer(t, dir)
	// 40 ms a step: tinyRun's steps take 2 to 5 ms, so the runs train for tens of seconds,
	// longer than the test looks at them; the test kills them when it ends.
	startWorker(t, dir, temporal, "40ms")
	ctx := newTab(t)

	submit(t, dir, temporal, "first", 2000)
	open(t, ctx, base, "#/run/first")
	waitJS(t, ctx, "the run page to show the run running", `document.getElementById("run-state").dataset.state === "running"`, `document.getElementById("run-state").dataset.state`)
	waitJS(t, ctx, "the run to commit its first checkpoint", `Number(document.getElementById("run-state").dataset.step) >= 10`, `document.getElementById("run-state").dataset.step`)

	// The trainer writes the history this chart draws (trainer/history): where it does
	// not (yet), the chart has nothing to grow, and only the controls are checked.
	hasHistory := func() bool {
		d := runDir(t, dir, temporal, "first")
		_, err := os.Stat(filepath.Join(d, history.FileName))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		return err == nil
	}
	grows := func(what string) {
		t.Helper()
		if !hasHistory() {
			t.Logf("the trainer wrote no %s in the run's folder: the loss chart's growth (%s) is not checked", history.FileName, what)
			return
		}
		n := points(t, ctx, "chart-loss")
		waitJS(t, ctx, what, fmt.Sprintf(`Number(document.getElementById("chart-loss").dataset.points) > %d`, n), `document.getElementById("chart-loss").dataset.points`)
	}
	grows("the loss chart gaining points while the run trains")
	screenshot(t, ctx, "run")

	if err := chromedp.Do(ctx, chromedp.Click("#btn-pause")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "Pause to turn the run's state to paused", `document.getElementById("run-state").dataset.state === "paused"`, `document.getElementById("run-state").dataset.state`)
	waitJS(t, ctx, "Resume to be enabled on a paused run", `!document.getElementById("btn-resume").disabled`, `document.getElementById("btn-resume").disabled`)
	if err := chromedp.Do(ctx, chromedp.Click("#btn-resume")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "Resume to turn the run's state back to running", `document.getElementById("run-state").dataset.state === "running"`, `document.getElementById("run-state").dataset.state`)
	grows("the loss chart gaining points again after Resume")

	submit(t, dir, temporal, "second", 2000, "train.optim.lr=1.0e-2")
	open(t, ctx, base, "#/compare/first,second")
	waitJS(t, ctx, "both runs in the compare table", `document.querySelectorAll("#compare-table tbody tr .state-running").length === 2`, `document.querySelector("#compare-table").textContent`)
	if hasHistory() {
		// Both runs' curves, each with 20 rows or more: two committed segments.
		waitJS(t, ctx, "the compare chart to draw both runs", `document.querySelectorAll("#chart-compare .u-series").length === 5 && Math.min(...(document.getElementById("chart-compare").dataset.runPoints || "0").split(",").map(Number)) >= 20`, `document.getElementById("chart-compare").dataset.runPoints`)
	}
	screenshot(t, ctx, "compare")

	open(t, ctx, base, "#/")
	waitJS(t, ctx, "the runs table to list both runs", `document.getElementById("runs-table").dataset.rows === "2"`, `document.getElementById("runs-table").dataset.rows`)
	// Live: the table follows the runs' steps without a reload.
	step := func() string {
		return evalJS[string](t, ctx, `[...document.querySelectorAll("#runs-table tbody tr")].find(r => r.textContent.includes("first")).cells[3].textContent`)
	}
	was := step()
	waitJS(t, ctx, "the runs table to show the run's new step without a reload",
		fmt.Sprintf(`[...document.querySelectorAll("#runs-table tbody tr")].find(r => r.textContent.includes("first")).cells[3].textContent !== %q`, was), `document.getElementById("runs-table").textContent`)
	sweepAndRuns(t, ctx, dir, temporal, base)
}

// sweepAndRuns runs a small sweep (lr × d_model, one ASHA rung) to its end, then
// checks and screenshots its page and the runs page that lists its trials.
func sweepAndRuns(t *testing.T, ctx context.Context, dir, temporal, base string) {
	t.Helper()
	const sweepYAML = "name: lrs\nbase: run.yaml\nset: [train.steps=8, train.eval.every=4, train.checkpoint.every=4]\n" +
		"space: {train.optim.lr: {values: [1.0e-3, 3.0e-3, 1.0e-2, 3.0e-2]}, model.d_model: {values: [16, 32]}}\n" +
		"metric: eval_loss\nasha: {rungs: [4], reduction_factor: 2}\n"
	if err := os.WriteFile(filepath.Join(dir, "lrs.yaml"), []byte(sweepYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, status := herd(t, dir, "sweep", "lrs.yaml", "--temporal", temporal, "--out", "lrs-results")
	if status != 0 {
		t.Fatalf("herd sweep: status %d\n%s", status, stderr)
	}
	open(t, ctx, base, "#/sweep/lrs")
	waitJS(t, ctx, "the sweep page to show the completed sweep", `document.getElementById("sweep-state-badge") && document.getElementById("sweep-state-badge").dataset.state === "completed"`, `document.getElementById("sweep-state").textContent`)
	waitJS(t, ctx, "the trials table to list 8 trials", `document.getElementById("trials-table").dataset.rows === "8"`, `document.getElementById("trials-table").dataset.rows`)
	screenshot(t, ctx, "sweep")
	open(t, ctx, base, "#/")
	waitJS(t, ctx, "the runs table to list the 2 runs and the 8 trials", `document.getElementById("runs-table").dataset.rows === "10"`, `[...document.querySelectorAll("#runs-table td.name")].map(td => td.textContent).join(" ")`)
	waitJS(t, ctx, "the sweeps table to list the sweep", `document.querySelector("#sweeps-table tbody").textContent.includes("lrs")`, `document.querySelector("#sweeps-table").textContent`)
	screenshot(t, ctx, "runs")
}
