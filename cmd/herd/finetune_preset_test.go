package main

import "testing"

// TestFineTuneFromPresetRun: a run whose config named a preset (as make demo's tiny)
// is a source for init.from: the fine-tuning run takes its shape, not its preset name,
// which init.from would refuse beside it.
func TestFineTuneFromPresetRun(t *testing.T) {
	dir := tinyRun(t)
	if _, stderr, status := herd(t, dir, "train", "run.yaml", "--out", "ckpts", "--set", "model.preset=tiny", "--set", "train.steps=1"); status != 0 {
		t.Fatalf("herd train: status %d\n%s", status, stderr)
	}
	if _, stderr, status := herd(t, dir, "train", "run.yaml", "--out", "ckpts", "--set", "name=ft", "--set", "init.from=ckpts/e2e", "--set", "train.steps=1"); status != 0 {
		t.Fatalf("fine-tuning from the preset run: status %d\n%s", status, stderr)
	}
}
