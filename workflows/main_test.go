package workflows_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/worker"

	"github.com/herdml/herd/internal/stephook"
	"github.com/herdml/herd/trainer"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/config"
	"github.com/herdml/herd/workflows/devserver"

	// The tests drive workflows through herd's client, which imports package workflows:
	// they are an external test package, and import both whole to read as the package's own.
	. "github.com/herdml/herd/workflows"
	. "github.com/herdml/herd/workflows/client"
)

// The tests run against a real embedded Temporal server. Workers and whole `herd run`
// or `herd sweep` processes that a test kills with SIGKILL are this test binary run again
// in a helper mode, chosen by environment variables:
//
//	HERD_TEST_WORKER=addr  a worker on addr, queue $HERD_TEST_QUEUE, $HERD_TEST_RANKS rank slots (`herd worker`)
//	HERD_TEST_RUN=dir      runLocal of the config in $HERD_TEST_CONFIG on state dir dir (`herd run`)
//	HERD_TEST_SWEEP=dir    sweepLocal of the input in $HERD_TEST_SWEEP_INPUT on state dir dir (`herd sweep`)
//
// No test depends on how fast the host trains: a test that needs a run mid-way holds it
// at a named step (hold, waitHeld) until it releases it, in this process and in the
// helpers alike (they inherit HERD_TEST_HOLDS, the folder of holds TestMain makes). Two
// knobs check that, for this binary and its helpers:
//
//	HERD_TEST_STEP_DELAY=d  every training step first waits d: about 10x slower with
//	                        300ms (a micro step takes 4 to 40 ms, see MicroYAML)
//	HERD_TEST_SMALL=1       the micro model shrinks (smallSets): steps about 8x faster
func TestMain(m *testing.M) {
	var holds string // the folder of holds this process made, for its helpers to inherit
	if os.Getenv(stephook.HoldsEnv) == "" {
		var err error
		if holds, err = os.MkdirTemp("", "herd-holds"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Setenv(stephook.HoldsEnv, holds)
	}
	var err error
	if stepHook, err = stephook.FromEnv(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if os.Getenv("HERD_TEST_WORKER") != "" || os.Getenv("HERD_TEST_RUN") != "" || os.Getenv("HERD_TEST_SWEEP") != "" {
		if err := runHelper(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if server.srv != nil {
		server.srv.Stop()
		_ = os.RemoveAll(server.dir)
	}
	if holds != "" {
		_ = os.RemoveAll(holds)
	}
	os.Exit(code)
}

// runHelper runs this binary in the helper mode its environment names (see TestMain).
func runHelper() error {
	switch {
	case os.Getenv("HERD_TEST_WORKER") != "":
		c, err := Dial(os.Getenv("HERD_TEST_WORKER"), "", Auth{})
		if err != nil {
			return err
		}
		ranks, _ := strconv.Atoi(os.Getenv("HERD_TEST_RANKS"))
		return NewWorker(c, os.Getenv("HERD_TEST_QUEUE"), hooked(&Activities{Ranks: ranks})).Run(worker.InterruptCh())
	case os.Getenv("HERD_TEST_RUN") != "":
		var in RunInput
		if err := json.Unmarshal([]byte(os.Getenv("HERD_TEST_CONFIG")), &in); err != nil {
			return err
		}
		_, err := runLocal(context.Background(), os.Getenv("HERD_TEST_RUN"), in, hooked(&Activities{}), nil)
		return err
	default:
		var in SweepInput
		if err := json.Unmarshal([]byte(os.Getenv("HERD_TEST_SWEEP_INPUT")), &in); err != nil {
			return err
		}
		_, err := sweepLocal(context.Background(), os.Getenv("HERD_TEST_SWEEP"), in, hooked(&Activities{}), nil)
		return err
	}
}

// runLocal is `herd run` without --temporal: the embedded server on stateDir (or the
// process already serving it) and a worker in this process that trains with acts; the
// run submitted or attached to and followed to its end.
func runLocal(ctx context.Context, stateDir string, in RunInput, acts *Activities, show func(Status)) (Progress, error) {
	conn, err := Connect(Target{Queue: TaskQueue, StateDir: stateDir}, acts)
	if err != nil {
		return Progress{}, err
	}
	defer conn.Close()
	if _, err := conn.SubmitRun(ctx, in); err != nil {
		return Progress{}, err
	}
	return Follow(ctx, conn.Client, in.Config.Name, FollowEvery, show)
}

// resumeLocal is `herd resume` without --temporal, as runLocal is `herd run`.
func resumeLocal(ctx context.Context, stateDir, name string, opts ResumeInput, acts *Activities, show func(Status)) (Progress, error) {
	conn, err := Connect(Target{Queue: TaskQueue, StateDir: stateDir}, acts)
	if err != nil {
		return Progress{}, err
	}
	defer conn.Close()
	if _, err := conn.ResumeRun(ctx, name, opts); err != nil {
		return Progress{}, err
	}
	return Follow(ctx, conn.Client, name, FollowEvery, show)
}

// sweepLocal is `herd sweep` without --temporal, as runLocal is `herd run`: the worker
// trains the sweep's max_concurrent trials side by side.
func sweepLocal(ctx context.Context, stateDir string, in SweepInput, acts *Activities, show func(SweepProgress)) (SweepProgress, error) {
	acts.Segments = in.MaxConcurrent
	conn, err := Connect(Target{Queue: TaskQueue, StateDir: stateDir}, acts)
	if err != nil {
		return SweepProgress{}, err
	}
	defer conn.Close()
	if _, err := conn.SubmitSweep(ctx, in); err != nil {
		return SweepProgress{}, err
	}
	return FollowSweep(ctx, conn.Client, in.Name, FollowEvery, show)
}

// stepHook is the step hook the environment asks for (see TestMain); hooked gives it to
// the Activities of every worker the tests start, so that holds and the step delay reach
// every segment.
var stepHook stephook.Hook

func hooked(a *Activities) *Activities {
	a.BeforeStep = stepHook
	return a
}

// hold makes every trainer of run, in this process and in the helpers, wait before step
// done+1 until release is called (or the test ends); a pause, stop or cancellation still
// reaches it. Every trainer the tests start goes through stepHook, trainDirect's too.
func hold(t testing.TB, run string, done int64) (release func()) {
	t.Helper()
	release, err := stephook.Hold(os.Getenv(stephook.HoldsEnv), run, done)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return release
}

// waitHeld waits until a trainer of run is held before step done+1 (see hold).
func waitHeld(t *testing.T, run string, done int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s held after step %d", run, done), func() bool { return held(run, done) })
}

// held reports whether a trainer of run has reached its hold before step done+1.
func held(run string, done int64) bool {
	return stephook.Held(os.Getenv(stephook.HoldsEnv), run, done)
}

// smallSets shrink MicroYAML's model about 8x in step time when HERD_TEST_SMALL is set
// (every test's runs and their references alike), to check that no test depends on a
// step taking as long as it does here.
func smallSets() []string {
	if os.Getenv("HERD_TEST_SMALL") == "" {
		return nil
	}
	return []string{"model.d_model=16", "model.seq_len=8", "model.ffn_hidden=32", "model.moe.expert_hidden=16"}
}

// microConfig is MicroYAML named name, checkpointing under a fresh folder.
func microConfig(t testing.TB, name string, sets ...string) config.Run {
	t.Helper()
	sets = slices.Concat([]string{"name=" + name, "train.checkpoint.dir=" + t.TempDir()}, smallSets(), sets)
	cfg, err := config.Parse("micro.yaml", []byte(MicroYAML), sets)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// input is a RunInput with a short heartbeat timeout, so that a killed worker is noticed
// in two seconds.
func input(cfg config.Run) RunInput {
	return RunInput{Config: cfg, HeartbeatTimeout: 2 * time.Second, SearchAttributes: true}
}

// trainDirect is `herd train`: the trainer run straight through, no Temporal.
func trainDirect(t testing.TB, cfg config.Run) string {
	t.Helper()
	return trainUntil(t, cfg, 0)
}

// trainUntil runs the trainer directly up to step until (0 = train.steps) and returns the
// run's checkpoint folder.
func trainUntil(t testing.TB, cfg config.Run, until int64) string {
	t.Helper()
	tr, err := trainer.New(cfg, trainer.Options{BeforeStep: stepHook})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close() // releases the run folder's lock for whoever trains it next
	if _, err := tr.Resume(""); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Run(context.Background(), until); err != nil {
		t.Fatal(err)
	}
	return tr.CheckpointDir()
}

// fingerprint is the sha256 of the weights and optimizer state of a run's newest
// checkpoint, and its name.
func fingerprint(t testing.TB, cfg config.Run) string {
	t.Helper()
	dir := filepath.Join(cfg.Train.Checkpoint.Dir, cfg.Name)
	name, _, err := checkpoint.Latest(checkpoint.Dir{Root: dir})
	if err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	h := sha256.New()
	for _, f := range []string{checkpoint.ModelFile, checkpoint.OptimFile} {
		r, err := os.Open(filepath.Join(dir, name, f))
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(h, r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return name + " " + hex.EncodeToString(h.Sum(nil))
}

// server is the embedded server shared by the tests of this package.
var server struct {
	srv *devserver.Server
	dir string
	err error
}

func startServer(t testing.TB) *devserver.Server {
	t.Helper()
	if server.srv == nil && server.err == nil {
		server.dir, server.err = os.MkdirTemp("", "herd-workflows-test")
		if server.err == nil {
			server.srv, server.err = devserver.Start(devserver.Options{StateDir: server.dir})
		}
	}
	if server.err != nil {
		t.Fatal(server.err)
	}
	return server.srv
}

// helper starts this test binary in a helper mode; the test kills it when done.
func helper(t testing.TB, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("helper %v output:\n%s", env, out.String())
		}
	})
	return cmd
}
