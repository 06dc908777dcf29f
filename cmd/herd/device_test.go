package main

import (
	"errors"
	"testing"

	"github.com/herdml/herd/internal/gpu"
)

// An unknown train.device is a user error naming the key and the allowed values, before
// anything is trained.
func TestDeviceUnknown(t *testing.T) {
	dir := tinyRun(t)
	stdout, stderr, status := herd(t, dir, "train", "run.yaml", "--set", "train.device=tpu")
	wantUserError(t, stdout, stderr, status, "--set train.device", `unknown device "tpu"`, "allowed: cpu, cuda, cuda:N")
}

// This herd has no CUDA backend yet, so train.device=cuda is a user error on every host,
// one line saying what the host has: no driver on a GPU-less host, else the GPUs NVML
// lists.
func TestDeviceCUDA(t *testing.T) {
	dir := tinyRun(t)
	want := []string{"train.device: cuda: ", "set train.device: cpu"}
	if _, err := gpu.List(); errors.Is(err, gpu.ErrNoDriver) {
		want = append(want, "no NVIDIA driver")
	} else if err == nil {
		want = append(want, "NVML (driver ")
	}
	stdout, stderr, status := herd(t, dir, "train", "run.yaml", "--set", "train.device=cuda")
	wantUserError(t, stdout, stderr, status, want...)
}
