package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/config"
)

func ramp(n int, scale float32) []float32 {
	d := make([]float32, n)
	for i := range d {
		d[i] = scale * float32(math.Sin(float64(i)+0.5))
	}
	return d
}

// The bytes follow the safetensors layout: u64 LE header length, JSON header padded to 8
// bytes with data_offsets relative to the data section, then little-endian data.
func TestSafetensorsLayout(t *testing.T) {
	a := Tensor{Name: "a", Shape: []int{2, 3}, Data: ramp(6, 1)}
	b := Tensor{Name: "b.w", Shape: []int{1}, Data: []float32{-2.5}}
	var buf bytes.Buffer
	if err := WriteSafetensors(&buf, map[string]string{"k": "v"}, []Tensor{a, b}); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	hlen := binary.LittleEndian.Uint64(raw)
	if hlen%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", hlen)
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:8+hlen], &header); err != nil {
		t.Fatalf("header is not JSON: %v", err)
	}
	var eb stEntry
	json.Unmarshal(header["b.w"], &eb)
	if eb.DType != "F32" || !slices.Equal(eb.Shape, []int{1}) || eb.DataOffsets != [2]int64{24, 28} {
		t.Fatalf("b.w header %+v, want F32 [1] at [24 28]", eb)
	}
	if got := math.Float32frombits(binary.LittleEndian.Uint32(raw[8+hlen+24:])); got != -2.5 {
		t.Fatalf("b.w data %v, want -2.5", got)
	}
	if len(raw) != 8+int(hlen)+28 {
		t.Fatalf("file is %d bytes, want %d", len(raw), 8+hlen+28)
	}

	got := []Tensor{{Name: "b.w", Shape: []int{1}, Data: make([]float32, 1)}, {Name: "a", Shape: []int{2, 3}, Data: make([]float32, 6)}}
	meta, err := ReadSafetensors(bytes.NewReader(raw), got)
	if err != nil {
		t.Fatal(err)
	}
	if meta["k"] != "v" || !slices.Equal(got[1].Data, a.Data) || got[0].Data[0] != -2.5 {
		t.Fatalf("read back meta %v, tensors %v", meta, got)
	}
	wrongShape := []Tensor{{Name: "a", Shape: []int{3, 2}, Data: make([]float32, 6)}, {Name: "b.w", Shape: []int{1}, Data: make([]float32, 1)}}
	if _, err := ReadSafetensors(bytes.NewReader(raw), wrongShape); err == nil || !strings.Contains(err.Error(), "shape") {
		t.Fatalf("a shape mismatch gave %v", err)
	}
	if _, err := ReadSafetensors(bytes.NewReader(raw[:len(raw)-2]), got); err == nil {
		t.Fatal("a truncated file was read")
	}
}

func snapshot(step int64, scale float32) Snapshot {
	return Snapshot{
		State: State{
			Step:       step,
			Data:       []data.State{{Epoch: 1, Index: 40 * step, Seed: 7, Hash: "abc"}},
			RNG:        []byte{1, 2, 3},
			Config:     json.RawMessage(`{"model":{"d_model":8},"train":{"optim":{"lr":0.003}}}`),
			ConfigHash: "c1",
			TableHash:  "t1",
		},
		Model:     []Tensor{{Name: "w", Shape: []int{3, 4}, Data: ramp(12, scale)}, {Name: "g", Shape: []int{4}, Data: ramp(4, -scale)}},
		Optim:     []Tensor{{Name: "m.w", Shape: []int{3, 4}, Data: ramp(12, 0.1)}, {Name: "v.w", Shape: []int{3, 4}, Data: ramp(12, 0.01)}},
		OptimMeta: map[string]string{"t": "5"},
	}
}

// dest is a snapshot with the same tensors, zeroed, to load into.
func dest(s Snapshot) Snapshot {
	zero := func(ts []Tensor) []Tensor {
		out := make([]Tensor, len(ts))
		for i, t := range ts {
			out[i] = Tensor{Name: t.Name, Shape: t.Shape, Data: make([]float32, len(t.Data))}
		}
		return out
	}
	return Snapshot{Model: zero(s.Model), Optim: zero(s.Optim)}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	st := Dir{Root: filepath.Join(t.TempDir(), "run")}
	want := snapshot(200, 1)
	name, err := Save(st, want)
	if err != nil {
		t.Fatal(err)
	}
	if name != "step-00000200" {
		t.Fatalf("name %q", name)
	}
	for _, f := range []string{ModelFile, OptimFile, StateFile, ManifestFile} {
		if _, err := os.Stat(filepath.Join(st.Root, name, f)); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := ReadState(st, name); err != nil || st.Step != 200 || st.Data[0] != want.State.Data[0] {
		t.Fatalf("ReadState: %+v, %v", st, err)
	}
	if d, n, err := At(filepath.Join(st.Root, name) + "/"); err != nil || d != st || n != name {
		t.Fatalf("At: %v, %q; want %v, %q", d, n, st, name)
	}
	refused := dest(want)
	no := errors.New("refused")
	if err := Load(st, name, &refused, func(State) error { return no }); err != no || refused.Model[0].Data[1] != 0 {
		t.Fatalf("a refused load returned %v and wrote %v", err, refused.Model[0].Data)
	}
	got := dest(want)
	if err := Load(st, name, &got, nil); err != nil {
		t.Fatal(err)
	}
	for i := range want.Model {
		if !slices.Equal(got.Model[i].Data, want.Model[i].Data) {
			t.Errorf("model tensor %s differs", want.Model[i].Name)
		}
	}
	for i := range want.Optim {
		if !slices.Equal(got.Optim[i].Data, want.Optim[i].Data) {
			t.Errorf("optim tensor %s differs", want.Optim[i].Name)
		}
	}
	s := got.State
	var config bytes.Buffer
	json.Compact(&config, s.Config)
	if s.Step != 200 || s.Data[0] != want.State.Data[0] || !bytes.Equal(s.RNG, want.State.RNG) || s.TableHash != "t1" ||
		s.ConfigHash != "c1" || config.String() != string(want.State.Config) || got.OptimMeta["t"] != "5" || string(s.FP8) != "null" {
		t.Fatalf("state %+v, optim meta %v", s, got.OptimMeta)
	}

	// Saving the same snapshot again gives the same bytes; committing over it replaces it.
	first, _ := os.ReadFile(filepath.Join(st.Root, name, ManifestFile))
	if _, err := Save(st, want); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(filepath.Join(st.Root, name, ManifestFile))
	if !bytes.Equal(first, again) {
		t.Fatal("saving the same snapshot twice gave different manifests")
	}
}

func TestLatestSkipsBrokenCheckpoints(t *testing.T) {
	st := Dir{Root: filepath.Join(t.TempDir(), "run")}
	for _, step := range []int64{100, 200, 300, 400} {
		if _, err := Save(st, snapshot(step, float32(step))); err != nil {
			t.Fatal(err)
		}
	}
	// 400: one flipped byte in the weights. 300: no manifest (as if written by hand, half
	// done). A temporary directory from a crashed save is not a checkpoint at all.
	p := filepath.Join(st.Root, "step-00000400", ModelFile)
	b, _ := os.ReadFile(p)
	b[len(b)-1] ^= 1
	os.WriteFile(p, b, 0o644)
	os.Remove(filepath.Join(st.Root, "step-00000300", ManifestFile))
	os.MkdirAll(filepath.Join(st.Root, ".tmp-step-00000500"), 0o755)

	name, warnings, err := Latest(st)
	if err != nil {
		t.Fatal(err)
	}
	if name != "step-00000200" {
		t.Fatalf("Latest = %s, want step-00000200", name)
	}
	if len(warnings) != 2 || !strings.Contains(warnings[0], "step-00000400") || !strings.Contains(warnings[0], ModelFile) ||
		!strings.Contains(warnings[1], "step-00000300") || !strings.Contains(warnings[1], ManifestFile) {
		t.Fatalf("warnings %q, want one naming step-00000400's model file and one step-00000300's manifest", warnings)
	}

	// Loading the corrupt one explicitly is a user error naming the file.
	snap := dest(snapshot(400, 1))
	err = Load(st, "step-00000400", &snap, nil)
	if !usererr.Is(err) || !strings.Contains(err.Error(), p) {
		t.Fatalf("loading a corrupt checkpoint: %v; want a user error naming %s", err, p)
	}
	// Tensors that do not fit the model are refused too.
	snap = dest(snapshot(200, 1))
	snap.Model[0].Shape = []int{4, 3}
	if err := Load(st, "step-00000200", &snap, nil); !usererr.Is(err) || !strings.Contains(err.Error(), "shape") {
		t.Fatalf("loading into another shape: %v", err)
	}

	if _, _, err := Latest(Dir{Root: filepath.Join(t.TempDir(), "none")}); err != ErrNone {
		t.Fatalf("Latest of an empty dir: %v, want ErrNone", err)
	}
}

func TestRetain(t *testing.T) {
	st := Dir{Root: t.TempDir()}
	for step := int64(1); step <= 7; step++ {
		if _, err := Save(st, snapshot(step, 1)); err != nil {
			t.Fatal(err)
		}
	}
	deleted, err := Retain(st, 2, 3, "")
	if err != nil {
		t.Fatal(err)
	}
	left, _ := st.List()
	slices.Sort(left)
	slices.Sort(deleted)
	if want := []string{"step-00000003", "step-00000006", "step-00000007"}; !slices.Equal(left, want) {
		t.Fatalf("kept %v, want %v", left, want)
	}
	if want := []string{"step-00000001", "step-00000002", "step-00000004", "step-00000005"}; !slices.Equal(deleted, want) {
		t.Fatalf("deleted %v, want %v", deleted, want)
	}
}

func TestCompatibleNamesWhatDiffers(t *testing.T) {
	st := Dir{Root: t.TempDir()}
	s := snapshot(10, 1).State
	if _, err := Compatible(st, "step-00000010", s, s.Config, "c1", "t1", nil); err != nil {
		t.Fatalf("same config refused: %v", err)
	}
	other := json.RawMessage(`{"model":{"d_model":16},"train":{"optim":{"lr":0.003}}}`)
	_, err := Compatible(st, "step-00000010", s, other, "c2", "t1", nil)
	if !usererr.Is(err) || !strings.Contains(err.Error(), "model.d_model: checkpoint 8, now 16") || !strings.Contains(err.Error(), StateFile) {
		t.Fatalf("another d_model: %v", err)
	}
	// Not even a lineage makes a shape resumable.
	_, err = Compatible(st, "step-00000010", s, other, "c2", "t1", []config.Change{{Step: 10, Key: "model.d_model", Was: "8", Now: "16"}})
	if !usererr.Is(err) || !strings.Contains(err.Error(), "model.d_model: checkpoint 8, now 16") {
		t.Fatalf("another d_model in the lineage: %v", err)
	}
	_, err = Compatible(st, "step-00000010", s, s.Config, "c1", "t2", nil)
	if !usererr.Is(err) || !strings.Contains(err.Error(), "MetaP table") {
		t.Fatalf("another table: %v", err)
	}
}

// Find takes a checkpoint folder as it is, a run folder as its newest valid checkpoint,
// and anything else as a user error naming the path.
func TestFind(t *testing.T) {
	st := Dir{Root: filepath.Join(t.TempDir(), "run")}
	for _, step := range []int64{100, 200} {
		if _, err := Save(st, snapshot(step, float32(step))); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(st.Root, "step-00000200", ModelFile)
	b, _ := os.ReadFile(p)
	b[0] ^= 1
	os.WriteFile(p, b, 0o644)

	d, name, warnings, err := Find(st.Root)
	if err != nil || d != st || name != "step-00000100" || len(warnings) != 1 || !strings.Contains(warnings[0], "step-00000200") {
		t.Fatalf("Find(run folder) = %v %q %q %v; want step-00000100 and a warning naming step-00000200", d, name, warnings, err)
	}
	// A checkpoint named explicitly is taken as it is, even a damaged one: loading it then
	// reports the damage instead of silently picking another.
	if d, name, _, err := Find(filepath.Join(st.Root, "step-00000200")); err != nil || d != st || name != "step-00000200" {
		t.Fatalf("Find(checkpoint) = %v %q %v", d, name, err)
	}
	empty := t.TempDir()
	if _, _, _, err := Find(empty); !usererr.Is(err) || !strings.Contains(err.Error(), empty) {
		t.Fatalf("Find(empty folder) = %v; want a user error naming it", err)
	}
}
