package config

import (
	"reflect"
	"testing"
)

// Diff names every leaf key that differs, by the key path users write, with both values
// as JSON text; list items by index, keys sorted.
func TestDiff(t *testing.T) {
	was := Default()
	was.Data.Train = "/a/x.txt"
	now := was
	if d := Diff(was, now); len(d) != 0 {
		t.Fatalf("same config: %v", d)
	}
	now.Data.Train = "/b/y.txt"
	now.Train.Checkpoint.Dir = "/elsewhere"
	now.Train.Optim.Betas[1] = 0.99
	want := []Difference{
		{Key: "data.train", Was: `"/a/x.txt"`, Now: `"/b/y.txt"`},
		{Key: "train.checkpoint.dir", Was: `"runs"`, Now: `"/elsewhere"`},
		{Key: "train.optim.betas.1", Was: "0.95", Now: "0.99"},
	}
	if got := Diff(was, now); !reflect.DeepEqual(got, want) {
		t.Fatalf("Diff:\n got %+v\nwant %+v", got, want)
	}
	// A key only one side has is "absent" on the other.
	got := DiffJSON([]byte(`{"a":{"b":1}}`), []byte(`{"a":{"c":[2]}}`))
	if want := []Difference{{Key: "a.b", Was: "1", Now: "absent"}, {Key: "a.c.0", Was: "absent", Now: "2"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("DiffJSON:\n got %+v\nwant %+v", got, want)
	}
}
