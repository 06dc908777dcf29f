package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/herdml/herd/kernels/cuda"
)

// An unknown train.device is a user error naming the key and the allowed values, before
// anything is trained.
func TestDeviceUnknown(t *testing.T) {
	dir := tinyRun(t)
	stdout, stderr, status := herd(t, dir, "train", "run.yaml", "--set", "train.device=tpu")
	wantUserError(t, stdout, stderr, status, "--set train.device", `unknown device "tpu"`, "allowed: cpu, cuda, cuda:N")
}

// This herd has no CUDA backend yet, so train.device=cuda is a user error on every host,
// one line saying what the CUDA driver found: no driver on a GPU-less host, else its error
// or the device.
func TestDeviceCUDA(t *testing.T) {
	dir := tinyRun(t)
	want := []string{"train.device: cuda: ", "set train.device: cpu"}
	if devs, err := cuda.Devices(); errors.Is(err, cuda.ErrNoLibrary) {
		want = append(want, "no NVIDIA driver")
	} else if err == nil && len(devs) > 0 {
		want = append(want, "found "+devs[0].String(), "not complete yet")
	}
	stdout, stderr, status := herd(t, dir, "train", "run.yaml", "--set", "train.device=cuda")
	wantUserError(t, stdout, stderr, status, want...)
}

// herd plan names the device of train.device and what each holds: one rank's whole
// replica, the memory per rank. A GPU run plans on a host without one.
func TestPlanPerDevice(t *testing.T) {
	dir := tinyRun(t)
	sets := []string{"--set", "train.device=cuda:1", "--set", "parallel.data=2"}
	stdout, stderr, status := herd(t, dir, append([]string{"plan", "run.yaml", "--json"}, sets...)...)
	if status != 0 {
		t.Fatalf("status %d\n%s", status, stderr)
	}
	var p struct {
		Rank struct {
			Total int64 `json:"total"`
		} `json:"memory_per_rank"`
		Device struct {
			Name    string `json:"device"`
			Bytes   int64  `json:"bytes"`
			Ranks   int    `json:"ranks"`
			Devices int    `json:"devices"`
		} `json:"memory_per_device"`
	}
	if err := json.Unmarshal([]byte(stdout), &p); err != nil {
		t.Fatal(err)
	}
	if d := p.Device; d.Name != "cuda:1" || d.Bytes != p.Rank.Total || d.Bytes <= 0 || d.Ranks != 1 || d.Devices != 2 {
		t.Errorf("memory per device %+v, want cuda:1 holding the %d bytes of one rank, on each of 2 devices", d, p.Rank.Total)
	}
	stdout, stderr, status = herd(t, dir, append([]string{"plan", "run.yaml"}, sets...)...)
	if want := "memory per device cuda:1: "; status != 0 || !strings.Contains(stdout, want) || !strings.Contains(stdout, "on each of 2 devices") {
		t.Errorf("herd plan: status %d, stdout %q, stderr %q; want a line %q", status, stdout, stderr, want)
	}
}
