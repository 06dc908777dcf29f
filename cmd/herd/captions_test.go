package main

import (
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// captionRunYAML is a vision model that trains a few steps in a second.
const captionRunYAML = `
name: cap
model: {vocab_size: 256, d_model: 16, n_layers: 1, n_heads: 2, n_kv_heads: 1, ffn_hidden: 32, seq_len: 32,
        vision: {patch: 4, channels: 1}}
data: {train: img}
train: {steps: 2, global_batch: 4, micro_batch: 4, checkpoint: {every: 0, keep: 1, dir: runs}}
`

// TestEvalCaptions packs generated PNGs with captions, trains two steps and scores greedy
// captions: every image is decoded once, and the references are grouped by caption.
func TestEvalCaptions(t *testing.T) {
	dir := t.TempDir()
	list := "file,caption\n"
	for i := range 6 {
		im := image.NewGray(image.Rect(0, 0, 8, 8))
		for p := range im.Pix {
			im.Pix[p] = uint8(40 * (i % 3) * (p % 8))
		}
		name := fmt.Sprintf("%d.png", i)
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, im); err != nil {
			t.Fatal(err)
		}
		f.Close()
		list += fmt.Sprintf("%s,a photo of a %s\n", name, []string{"bag", "coat", "dress"}[i%3])
	}
	os.WriteFile(filepath.Join(dir, "list.csv"), []byte(list), 0o644)
	os.WriteFile(filepath.Join(dir, "cap.yaml"), []byte(captionRunYAML), 0o644)
	if _, errs, status := herd(t, dir, "data", "pack", "--quiet", "--images", "list.csv", "--channels", "1", "--patch", "4",
		"--seq-len", "32", "--out", "img"); status != 0 {
		t.Fatalf("pack: status %d, %s", status, errs)
	}
	if _, errs, status := herd(t, dir, "train", "cap.yaml"); status != 0 {
		t.Fatalf("train: status %d, %s", status, errs)
	}
	out, errs, status := herd(t, dir, "eval", "runs/cap/step-00000002", "--data", "img", "--captions", "--json")
	if status != 0 {
		t.Fatalf("eval --captions: status %d, %s", status, errs)
	}
	var sum captionSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("eval printed %q: %v", out, err)
	}
	if sum.Images != 6 || len(sum.Classes) != 3 || sum.Classes[0].Caption != "bag" || sum.Classes[0].Images != 2 ||
		sum.Accuracy != float64(sum.Correct)/6 {
		t.Errorf("summary %+v, want 6 images in 3 captions of 2 (bag first)", sum)
	}
	_, errs, status = herd(t, dir, "eval", "runs/cap/step-00000002", "--data", "img", "--captions", "--caption-prefix", "an image of ")
	if status != 2 || !strings.Contains(errs, "does not start with the caption prefix") {
		t.Errorf("another prefix: status %d, %q; want 2 and the reason", status, errs)
	}
	_, errs, status = herd(t, dir, "eval", "runs/cap/step-00000002", "--data", "list.csv", "--captions")
	if status != 2 || !strings.Contains(errs, "no image documents") {
		t.Errorf("text data: status %d, %q; want 2 and the reason", status, errs)
	}
}
