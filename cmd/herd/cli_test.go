package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/herdml/herd/internal/stephook"
	"github.com/herdml/herd/workflows/sweep"
)

// The end-to-end tests run herd as users do: a separate process, its exit status, its
// stdout and stderr. The test binary is that process: with HERD_TEST_MAIN set it runs
// main() itself, which spares a second link of everything herd imports.
//
// No test here depends on how fast the host trains; two knobs check that (herd
// processes inherit them):
//
//	HERD_TEST_STEP_DELAY=d  every training step of every herd process first waits d
//	                        (see internal/stephook): about 10x slower with 40ms, as a
//	                        step of tinyRun's model takes 2 to 5 ms
//	HERD_TEST_SMALL=1       tinyRun's sequences shrink from 32 to 8 tokens (steps about
//	                        2x faster: at this size a step is mostly fixed costs)
func TestMain(m *testing.M) {
	var err error
	if beforeStep, err = stephook.FromEnv(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if os.Getenv("HERD_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// herdCmd is the command that runs the binary as herd (TestMain's HERD_TEST_MAIN) in
// dir, with env added to the test's environment.
func herdCmd(t *testing.T, dir string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "HERD_TEST_MAIN=1"), env...)
	return cmd
}

// herd runs the binary in dir and returns its stdout, stderr and exit status.
func herd(t *testing.T, dir string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	cmd := herdCmd(t, dir, nil, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	status = 0
	if ee, ok := err.(*exec.ExitError); ok {
		status = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	noStackTrace(t, args, out.String()+errb.String())
	return out.String(), errb.String(), status
}

// start runs the binary in dir in the background until the test ends, and returns the
// first line of its stdout that matches re (submatch 1), waiting up to five minutes: a
// bound on a hang, however slow and loaded the machine. A nil re waits for nothing.
func start(t *testing.T, dir string, re *regexp.Regexp, args ...string) string {
	t.Helper()
	if re == nil {
		startWith(t, dir, nil, args)
		return ""
	}
	return startWith(t, dir, nil, args, re)[0]
}

// startWith is start with env added to the process's environment, returning submatch 1
// of the first stdout line that matches each of res. It reads stdout to the end, so
// that the process never blocks on a full pipe, and logs stdout and stderr if the test
// fails.
func startWith(t *testing.T, dir string, env, args []string, res ...*regexp.Regexp) []string {
	t.Helper()
	cmd := herdCmd(t, dir, env, args...)
	var outb, errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan []string, 1)
	read := make(chan struct{})
	go func() {
		defer close(read)
		got, seen, left := make([]string, len(res)), make([]bool, len(res)), len(res)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			outb.WriteString(sc.Text() + "\n")
			for i, re := range res {
				if m := re.FindStringSubmatch(sc.Text()); m != nil && !seen[i] {
					got[i], seen[i] = m[1], true
					if left--; left == 0 {
						found <- got
					}
				}
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait() // closes stdout, which ends the reader
		<-read
		if t.Failed() {
			t.Logf("herd %s:\n%s%s", strings.Join(args, " "), outb.String(), errb.String())
		}
	})
	if len(res) == 0 {
		return nil
	}
	select {
	case got := <-found:
		return got
	case <-time.After(5 * time.Minute):
		t.Fatalf("herd %s printed no lines matching %v", strings.Join(args, " "), res)
		return nil
	}
}

// noStackTrace fails the test when herd's output holds a Go panic or stack trace: every
// failure, a user's mistake or not, is a message, never a trace.
func noStackTrace(t *testing.T, args []string, output string) {
	t.Helper()
	for _, sign := range []string{"panic:", "goroutine ", "fatal error:"} {
		if strings.Contains(output, sign) {
			t.Errorf("herd %s printed a Go stack trace (%q):\n%s", strings.Join(args, " "), sign, output)
			return
		}
	}
}

// wantUserError checks the shape of a user error: exit status 2, one line on stderr
// holding each of want, nothing on stdout.
func wantUserError(t *testing.T, stdout, stderr string, status int, want ...string) {
	t.Helper()
	if status != 2 {
		t.Fatalf("status %d, want 2\nstderr: %s", status, stderr)
	}
	if stdout != "" || strings.Count(stderr, "\n") != 1 {
		t.Errorf("want one line on stderr and nothing on stdout, got stdout %q, stderr %q", stdout, stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr %q does not contain %q", stderr, w)
		}
	}
}

// tinyRun writes a config for a model small enough to train a few steps in a second, on
// text copied from Go's sources, and returns the folder holding it.
func tinyRun(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range map[string]string{"train/a.txt": "errors/errors.go", "train/b.txt": "errors/wrap.go", "eval/c.txt": "io/pipe.go"} {
		text, err := os.ReadFile(filepath.Join(runtime.GOROOT(), "src", src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), text, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := `
name: e2e
model:
  vocab_size: 256
  d_model: 32
  n_layers: 2
  n_heads: 2
  n_kv_heads: 1
  ffn_hidden: 64
  seq_len: 32
  moe: {experts: 2, top_k: 1, shared_expert: true, every: 2, expert_hidden: 32}
data: {train: "train/*.txt", eval: "eval/*.txt"}
train:
  steps: 3
  global_batch: 4
  micro_batch: 2
  schedule: {warmup: 1}
  checkpoint: {every: 2, keep: 2, dir: out}
  eval: {every: 0, batches: 2}
metap: {mode: sp}
`
	if os.Getenv("HERD_TEST_SMALL") != "" {
		cfg = strings.Replace(cfg, "seq_len: 32", "seq_len: 8", 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "run.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestTrainJSON(t *testing.T) {
	dir := tinyRun(t)
	stdout, stderr, status := herd(t, dir, "train", "run.yaml", "--json", "--out", "ckpts")
	if status != 0 {
		t.Fatalf("herd train: status %d\n%s", status, stderr)
	}
	var sum trainSummary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("stdout is not one JSON summary: %v\n%s", err, stdout)
	}
	// Not a terminal: progress comes as plain lines on stderr, the last step always among them.
	for _, want := range []string{"step 2: checkpoint step-00000002", "step 3: eval loss", "step 3/3  loss"} {
		if !strings.Contains(stderr, want) || strings.Contains(stderr, "\r") {
			t.Errorf("progress on stderr lacks %q or rewrites lines:\n%s", want, stderr)
		}
	}
	if sum.Steps != 3 || !(sum.TrainLoss > 0 && sum.TrainLoss < 10) || !(sum.EvalLoss > 0 && sum.EvalLoss < 10) || !(sum.TokensPerS > 0) {
		t.Fatalf("summary %+v", sum)
	}
	if math.Abs(sum.BitsPerByte-sum.EvalLoss/math.Ln2) > 1e-12 {
		t.Errorf("bits per byte %g, want eval loss / ln 2 = %g", sum.BitsPerByte, sum.EvalLoss/math.Ln2)
	}
	if want := filepath.Join("ckpts", "e2e", "step-00000003"); sum.Checkpoint != want {
		t.Errorf("checkpoint %q, want %q", sum.Checkpoint, want)
	}
	if _, err := os.Stat(filepath.Join(dir, sum.Checkpoint, "manifest.json")); err != nil {
		t.Errorf("no committed checkpoint: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); !os.IsNotExist(err) {
		t.Errorf("--out ignored: train.checkpoint.dir was written (%v)", err)
	}

	// herd eval on the same held-out data and batches gives the training run's eval loss,
	// bit for bit: the checkpoint holds everything the forward pass needs.
	stdout, stderr, status = herd(t, dir, "eval", sum.Checkpoint, "--data", "eval/*.txt", "--batches", "2", "--json")
	if status != 0 {
		t.Fatalf("herd eval: status %d\n%s", status, stderr)
	}
	var ev evalSummary
	if err := json.Unmarshal([]byte(stdout), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Loss != sum.EvalLoss || ev.Step != 3 || ev.Batches != 2 {
		t.Errorf("herd eval %+v, want loss %v at step 3 over 2 batches", ev, sum.EvalLoss)
	}

	if _, stderr, status = herd(t, dir, "export", sum.Checkpoint, "exported"); status != 0 {
		t.Fatalf("herd export: status %d\n%s", status, stderr)
	}
	for _, f := range []string{"model.safetensors", "config.json"} {
		if fi, err := os.Stat(filepath.Join(dir, "exported", f)); err != nil || fi.Size() == 0 {
			t.Errorf("export wrote no %s (%v)", f, err)
		}
	}

	// Training again finds the run complete: it resumes from the last checkpoint, trains
	// nothing, and reports the same checkpoint and eval loss.
	first := sum
	stdout, stderr, status = herd(t, dir, "train", "run.yaml", "--json", "--out", "ckpts")
	if status != 0 {
		t.Fatalf("second herd train: status %d\n%s", status, stderr)
	}
	sum = trainSummary{}
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Steps != 3 || sum.ResumedFrom != "step-00000003" || sum.Checkpoint != first.Checkpoint || sum.EvalLoss != first.EvalLoss {
		t.Errorf("second run %+v, want 3 steps resumed from step-00000003 with eval loss %g", sum, first.EvalLoss)
	}
}

func TestPlanJSON(t *testing.T) {
	dir := tinyRun(t)
	stdout, stderr, status := herd(t, dir, "plan", "run.yaml", "--json", "--set", "model.n_layers=4")
	if status != 0 {
		t.Fatalf("status %d\n%s", status, stderr)
	}
	var p struct {
		Params        int64   `json:"params"`
		ActiveParams  int64   `json:"active_params"`
		FLOPsPerToken float64 `json:"flops_per_token"`
	}
	if err := json.Unmarshal([]byte(stdout), &p); err != nil {
		t.Fatal(err)
	}
	// Per layer: attention 32·32·2 + 16·32·2 = 3072, gains 64; dense FFN 3·64·32 = 6144;
	// MoE router 2·32, experts 2·3·32·32 = 6144, shared 3·32·32 = 3072. Two of each kind,
	// embedding and head 256·32 each, final norm 32.
	want := int64(2*256*32 + 32 + 4*(3072+64) + 2*6144 + 2*(64+6144+3072))
	if p.Params != want || p.ActiveParams != want-2*3072 || !(p.FLOPsPerToken > 0) {
		t.Errorf("plan %+v, want %d parameters, %d active", p, want, want-2*3072)
	}
}

// TestBadInput runs each kind of user mistake: exit status 2, one line on stderr naming
// the key or file and what is allowed, nothing on stdout and nothing written.
func TestBadInput(t *testing.T) {
	dir := tinyRun(t)
	if err := os.WriteFile(filepath.Join(dir, "typo.yaml"), []byte("train: {optim: {lrr: 1}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A good checkpoint, and a copy of it with its weights damaged.
	if _, stderr, status := herd(t, dir, "train", "run.yaml", "--out", "good"); status != 0 {
		t.Fatalf("herd train: status %d\n%s", status, stderr)
	}
	good := filepath.Join(dir, "good", "e2e", "step-00000003")
	broken := filepath.Join(dir, "broken", "step-00000003")
	if err := os.MkdirAll(broken, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"model.safetensors", "optim.safetensors", "state.json", "manifest.json"} {
		b, err := os.ReadFile(filepath.Join(good, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "model.safetensors" {
			b[len(b)-1] ^= 1
		}
		if err := os.WriteFile(filepath.Join(broken, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	train := func(extra ...string) []string {
		return append([]string{"train", "run.yaml", "--out", "written"}, extra...)
	}
	for _, c := range []struct {
		name string
		args []string
		want []string // parts of the message
	}{
		{"unknown key", []string{"train", "typo.yaml", "--out", "written"}, []string{"typo.yaml: train.optim.lrr", "allowed at train.optim: lr, betas"}},
		{"unknown --set key", train("--set", "model.dmodel=4"), []string{"--set model.dmodel", "allowed at model:"}},
		{"zero size", train("--set", "model.d_model=0"), []string{"model.d_model", "positive"}},
		{"negative size", train("--steps", "-5"), []string{"train.steps", "positive"}},
		{"heads do not divide d_model", train("--set", "model.n_heads=3"), []string{"model.n_heads", "must divide d_model (32)"}},
		{"kv heads do not divide heads", train("--set", "model.n_kv_heads=3"), []string{"model.n_kv_heads", "must divide n_heads (2)"}},
		{"top_k above experts", train("--set", "model.moe.top_k=3"), []string{"model.moe.top_k", "at most experts (2)"}},
		{"missing data", train("--set", "data.train=nothere/*.txt"), []string{"nothere/*.txt"}},
		{"missing config", []string{"train", "nothere.yaml", "--out", "written"}, []string{"nothere.yaml", "no such file"}},
		{"bad flag", train("--stpes", "3"), []string{"unknown flag: --stpes"}},
		{"bad metrics address", train("--metrics", "127.0.0.1:notaport"), []string{"--metrics", `"127.0.0.1:notaport"`, "HOST:PORT"}},
		{"checkpoint missing", []string{"eval", "ckpts/e2e/step-00000009", "--data", "eval/*.txt"}, []string{"ckpts/e2e/step-00000009/manifest.json", "unreadable checkpoint"}},
		{"checkpoint corrupt", []string{"export", "broken/step-00000003", "written"}, []string{"broken/step-00000003/model.safetensors", "sha256"}},
		{"eval without data", []string{"eval", "broken/step-00000003"}, []string{"--data", "required"}},
		{"eval data missing", []string{"eval", "good/e2e/step-00000003", "--data", "nothere/*.txt"}, []string{"nothere/*.txt"}},
		{"plan bad value", []string{"plan", "run.yaml", "--set", "train.precision=bf16"}, []string{"--set train.precision", "allowed: fp32, fp8"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, status := herd(t, dir, c.args...)
			wantUserError(t, stdout, stderr, status, c.want...)
			if _, err := os.Stat(filepath.Join(dir, "written")); !os.IsNotExist(err) {
				t.Errorf("output written on bad input (%v)", err)
			}
		})
	}
}

// TestExamplesPlan keeps every example config loadable, and checks `herd plan` on the
// Llama 4 shapes: 17B active parameters each, 109B and 400B in all (herd counts a patch
// projection where Llama 4 has a vision encoder, hence 108 G).
func TestExamplesPlan(t *testing.T) {
	examples, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(examples) < 5 {
		t.Fatalf("examples: %v %v", examples, err)
	}
	for _, ex := range examples {
		if _, err := sweep.Load(ex); err == nil {
			continue // a sweep file (examples/metap-transfer.yaml): its own tests load it
		}
		if _, stderr, status := herd(t, ".", "plan", ex, "--json"); status != 0 {
			t.Errorf("herd plan %s: status %d\n%s", ex, status, stderr)
		}
	}
	for ex, want := range map[string]string{"scout": "108 G total, 17.2 G active", "maverick": "401 G total, 17.2 G active"} {
		stdout, stderr, status := herd(t, ".", "plan", "../../examples/"+ex+".yaml")
		if status != 0 || !strings.Contains(stdout, want) {
			t.Errorf("herd plan %s: status %d, stdout %q, stderr %q; want %q", ex, status, stdout, stderr, want)
		}
	}
}
