package stephook

import (
	"context"
	"testing"
	"time"
)

// A hold keeps the hook from returning until it is released; Held says it got there.
func TestHoldUntilRelease(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(DelayEnv, "")
	t.Setenv(HoldsEnv, dir)
	hook, err := FromEnv()
	if err != nil || hook == nil {
		t.Fatalf("FromEnv: %v, %v", hook, err)
	}
	release, err := Hold(dir, "r", 3)
	if err != nil {
		t.Fatal(err)
	}
	hook(context.Background(), "r", 2) // no hold there: returns
	hook(context.Background(), "s", 3) // nor for another run
	returned := make(chan struct{})
	go func() {
		hook(context.Background(), "r", 3)
		close(returned)
	}()
	for !Held(dir, "r", 3) {
		time.Sleep(time.Millisecond)
	}
	select {
	case <-returned:
		t.Fatal("the hook returned while held")
	default:
	}
	release()
	<-returned
}

// A held hook returns once its context ends: a pause or stop reaches a held run.
func TestHoldEndsWithContext(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(DelayEnv, "")
	t.Setenv(HoldsEnv, dir)
	hook, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Hold(dir, "r", 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for !Held(dir, "r", 0) {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	hook(ctx, "r", 0)
	if ctx.Err() == nil {
		t.Fatal("the hook returned before its context ended")
	}
}

// A stuck hold outlasts its context: the hook returns only once it is released.
func TestStickOutlastsContext(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(DelayEnv, "")
	t.Setenv(HoldsEnv, dir)
	hook, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	release, err := Stick(dir, "r", 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	returned := make(chan struct{})
	go func() {
		hook(ctx, "r", 0)
		close(returned)
	}()
	for !Held(dir, "r", 0) {
		time.Sleep(time.Millisecond)
	}
	select {
	case <-returned:
		t.Fatal("the hook returned while stuck, its context ended")
	default:
	}
	release()
	<-returned
}

// HERD_TEST_STEP_DELAY delays every step by at least the duration; a bad value is an
// error, and nothing set means no hook.
func TestDelay(t *testing.T) {
	t.Setenv(HoldsEnv, "")
	t.Setenv(DelayEnv, "")
	if hook, err := FromEnv(); hook != nil || err != nil {
		t.Fatalf("nothing set: %v, %v; want no hook", hook, err)
	}
	t.Setenv(DelayEnv, "soon")
	if _, err := FromEnv(); err == nil {
		t.Fatal("a bad delay was accepted")
	}
	t.Setenv(DelayEnv, "20ms")
	hook, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	hook(context.Background(), "r", 0)
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("a step waited %v, want at least 20ms", d)
	}
}
