package trainer

import (
	"context"
	"strings"
	"testing"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/config"
	"github.com/herdml/herd/trainer/model"
)

// captionYAML is a vision model small enough to overfit two 8x8 images in seconds.
const captionYAML = `
name: captions
seed: 1
model:
  vocab_size: 256
  d_model: 32
  n_layers: 2
  n_heads: 2
  n_kv_heads: 1
  ffn_hidden: 64
  seq_len: 32
  vision: {patch: 4, channels: 1}
train:
  steps: 120
  global_batch: 8
  micro_batch: 8
  optim: {lr: 1.0e-2, weight_decay: 0.0, clip: 1.0}
  schedule: {warmup: 10, decay: cosine, min_lr_ratio: 0.1}
  checkpoint: {every: 0, keep: 1}
metap: {mode: sp}
`

// packTwoImages writes 16 rows, 8 copies each of two 8x8 images that differ only in which
// half is bright, captioned "a photo of a bag" and "a photo of a trouser": the caption can
// only be told from the pixels.
func packTwoImages(t *testing.T, prefix string) string {
	t.Helper()
	dir := t.TempDir()
	img := func(left bool) *data.Image {
		pix := make([]uint8, 64)
		for i := range pix {
			if (i%8 < 4) == left {
				pix[i] = 255
			}
		}
		return &data.Image{H: 8, W: 8, C: 1, Pix: pix}
	}
	read := func(emit func(*data.RawDoc) error) error {
		for i := range 16 {
			name := []string{"bag", "trouser"}[i%2]
			if err := emit(&data.RawDoc{Where: name, Text: []byte(prefix + name + "\n"), Image: img(i%2 == 0)}); err != nil {
				return err
			}
		}
		return nil
	}
	if _, err := data.Pack(read, data.PackOptions{Out: dir, SeqLen: 32, Patch: 4, Channels: 1}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func captionTrainer(t *testing.T, shards string) *Trainer {
	t.Helper()
	cfg, err := config.Parse("captions.yaml", []byte(captionYAML), []string{"train.checkpoint.dir=" + t.TempDir(), "data.train=" + shards})
	if err != nil {
		t.Fatal(err)
	}
	return newTrainer(t, cfg, Options{})
}

// naiveCaptions is the textbook greedy decode, one forward pass per token, for each image
// document of the data: what Captions' drafted decoding must reproduce token for token.
func naiveCaptions(t *testing.T, tr *Trainer, spec string) []string {
	t.Helper()
	mb, seqLen, V := tr.Cfg.Train.MicroBatch, tr.Cfg.Model.SeqLen, tr.Cfg.Model.VocabSize
	src, err := data.Open(spec, seqLen, mb, mb, 0, 1, tr.Cfg.Data.ShuffleSeed)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	tok, _ := data.NewTokenizer("byte")
	d := &decoder{tr: tr, tok: tok, newline: map[int32]bool{}, pre: tok.Encode(nil, []byte(data.FashionCaptionPrefix))}
	var b, one data.Batch
	var out []string
	for read := 0; read < int(src.Info().Rows); read += mb {
		if err := src.Next(&b); err != nil {
			t.Fatal(err)
		}
		for r := range min(b.B, int(src.Info().Rows)-read) {
			items, err := d.items(&b, r, "")
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range items {
				var got []int32
				for len(got) < captionMaxTokens && len(it.prompt)+len(got) <= seqLen {
					seq := append(append([]int32(nil), it.prompt...), got...)
					T := len(seq)
					one.Resize(1, T)
					copy(one.Tokens, seq)
					clear(one.Targets)
					clear(one.Mask)
					clear(one.Doc)
					for p := range T {
						one.Pos[p] = int32(p)
					}
					for p := range it.nPatch {
						one.PatchAt = append(one.PatchAt, int32(p))
					}
					one.Patches = append(one.Patches, it.patches...)
					tr.Model.Forward(&one)
					next := model.Argmax(tr.Model.Logits().Host()[(T-1)*V : T*V])
					got = append(got, next)
					if next == '\n' {
						break
					}
				}
				out = append(out, d.text(got))
			}
		}
	}
	return out
}

// TestCaptionsDecodeWhatTheImageShows: a model trained to overfit two images captions each
// by its pixels, and the drafted greedy decode equals one-token-at-a-time greedy decoding,
// before training (every draft token wrong) and after (every draft token right).
func TestCaptionsDecodeWhatTheImageShows(t *testing.T) {
	shards := packTwoImages(t, data.FashionCaptionPrefix)
	tr := captionTrainer(t, shards)
	defer tr.Close()
	check := func(when string) []Caption {
		caps, err := tr.Captions(shards, data.FashionCaptionPrefix, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(caps) != 16 {
			t.Fatalf("%s: %d captions for 16 images", when, len(caps))
		}
		naive := naiveCaptions(t, tr, shards)
		for i, c := range caps {
			if c.Got != naive[i] {
				t.Errorf("%s: image %d: drafted decode %q, greedy decode %q", when, i, c.Got, naive[i])
			}
		}
		return caps
	}
	for _, c := range check("untrained") {
		if c.Got == c.Want {
			t.Errorf("untrained: image captioned %q already", c.Got)
		}
	}
	if _, err := tr.Run(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	wants := map[string]int{}
	for i, c := range check("trained") {
		wants[c.Want]++
		if c.Got != c.Want {
			t.Errorf("trained: image %d captioned %q, want %q", i, c.Got, c.Want)
		}
	}
	if wants["bag"] != 8 || wants["trouser"] != 8 {
		t.Errorf("reference captions %v, want 8 bags and 8 trousers", wants)
	}
}

// TestCaptionsRefuseAnotherPrefix: captions that do not start with the prefix given are a
// user error naming the sample and both texts.
func TestCaptionsRefuseAnotherPrefix(t *testing.T) {
	shards := packTwoImages(t, "an image of a ")
	tr := captionTrainer(t, shards)
	defer tr.Close()
	_, err := tr.Captions(shards, data.FashionCaptionPrefix, 4)
	if !usererr.Is(err) || !strings.Contains(err.Error(), "sample 0") || !strings.Contains(err.Error(), `"a photo of a "`) {
		t.Fatalf("got %v, want a user error naming sample 0 and the prefix", err)
	}
}
