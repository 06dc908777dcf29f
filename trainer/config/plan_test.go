package config

import "testing"

// Each rank's device holds a whole replica: on GPUs one rank per device, on the CPU every
// in-process rank on the one device.
func TestPlanDevice(t *testing.T) {
	for _, c := range []struct {
		sets           []string
		name           string
		ranks, devices int
	}{
		{nil, "cpu", 1, 1},
		{[]string{"parallel.data=2", "train.global_batch=16"}, "cpu", 2, 1},
		{[]string{"train.device=cuda"}, "cuda:0", 1, 1},
		{[]string{"train.device=cuda:3", "parallel.data=4", "train.global_batch=32"}, "cuda:3", 1, 4},
	} {
		r, err := Parse("p.yaml", []byte(sketch), c.sets)
		if err != nil {
			t.Fatal(err)
		}
		p := r.Plan()
		want := Device{Name: c.name, Bytes: p.Memory.Total, Ranks: c.ranks, Devices: c.devices}
		if p.Device != want || want.Bytes <= 0 {
			t.Errorf("--set %v: device %+v, want %+v", c.sets, p.Device, want)
		}
	}
}
