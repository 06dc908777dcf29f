package trainer

import (
	"fmt"
	"slices"
	"strings"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/trainer/model"
)

// Caption scoring: the model sees an image (and the fixed start of its caption) and decodes
// the rest greedily; the decode is compared with the caption the data holds. On Fashion-MNIST
// the rest is the class name, so the share of exact matches is the caption accuracy of
// issue 4 (a model that ignores the image scores 10%).

// Caption is one image's reference continuation and the model's greedy one, each up to and
// without its newline.
type Caption struct {
	Want, Got string
}

// captionMaxTokens bounds a greedy decode that never emits a newline.
const captionMaxTokens = 32

// Captions decodes, for the first limit rows (all rows if limit <= 0) of the data spec
// names, in its shuffled order, every document that starts with an image: the prompt is
// the image's patches and the caption's first tokens up to and including prefix, and the
// model greedily continues it until it emits a newline (or captionMaxTokens tokens, or the
// end of seq_len). A caption that does not start with prefix is a user error naming it, and
// so is data without images.
//
// Decoding is exact greedy decoding, made cheap by drafting: each item's draft is the
// reference continuation, and one forward pass over prompt + draft checks every drafted
// token at once (causal attention: a position's logits see only what precedes it). The
// longest prefix of the draft that equals the argmax at each step is kept, the argmax after
// it replaces the rest, and the pass repeats until the newline. A model that reproduces
// the caption costs one pass; each wrong token at most one more.
func (tr *Trainer) Captions(spec, prefix string, limit int) ([]Caption, error) {
	cfg := tr.Cfg
	mb := cfg.Train.MicroBatch
	src, err := data.Open(spec, cfg.Model.SeqLen, mb, mb, 0, 1, cfg.Data.ShuffleSeed)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	info := src.Info()
	tok, err := data.NewTokenizer(info.Tokenizer)
	if err != nil {
		return nil, err
	}
	if info.Vocab > cfg.Model.VocabSize {
		return nil, usererr.New(spec, "vocabulary %d is larger than the model's vocab_size %d", info.Vocab, cfg.Model.VocabSize)
	}
	if tr.fp8 != nil {
		tr.fp8.SetFrozen(true)
		defer tr.fp8.SetFrozen(false)
	}
	rows := info.Rows
	if limit > 0 && int64(limit) < rows {
		rows = int64(limit)
	}
	d := &decoder{tr: tr, tok: tok, newline: map[int32]bool{}, pre: tok.Encode(nil, []byte(prefix))}
	var out []Caption
	var b data.Batch
	for read := int64(0); read < rows; read += int64(mb) {
		if err := src.Next(&b); err != nil {
			return nil, err
		}
		var items []*captionItem
		for r := range min(int64(b.B), rows-read) {
			its, err := d.items(&b, int(r), fmt.Sprintf("%s: sample %d", spec, read+r))
			if err != nil {
				return nil, err
			}
			items = append(items, its...)
		}
		for lo := 0; lo < len(items); lo += mb {
			d.decode(items[lo:min(lo+mb, len(items))])
		}
		for _, it := range items {
			out = append(out, Caption{Want: it.want, Got: d.text(it.got)})
		}
	}
	if len(out) == 0 {
		return nil, usererr.New(spec, "holds no image documents to caption")
	}
	return out, nil
}

// captionItem is one image document being decoded.
type captionItem struct {
	prompt  []int32   // token ids; ignored at image positions
	patches []float32 // the image's pixels, patch after patch
	nPatch  int       // the prompt's first nPatch positions are the image
	want    string    // reference continuation without its newline
	draft   []int32   // tokens proposed after the prompt
	got     []int32   // tokens confirmed as the greedy decode
	done    bool
}

type decoder struct {
	tr      *Trainer
	tok     data.Tokenizer
	pre     []int32        // the prefix's tokens
	newline map[int32]bool // memo: does the token's text hold a newline
	batch   data.Batch
}

// items returns the image documents of row r of b.
func (d *decoder) items(b *data.Batch, r int, where string) ([]*captionItem, error) {
	T := b.T
	patchOf := map[int]int{} // position in row -> patch index in b
	for i, at := range b.PatchAt {
		if int(at)/T == r {
			patchOf[int(at)%T] = i
		}
	}
	P := d.tr.Cfg.Model.PatchPixels()
	var out []*captionItem
	for start := 0; start < T; {
		end := start + 1
		for end < T && b.Doc[r*T+end] == b.Doc[r*T+start] {
			end++
		}
		n := 0
		for start+n < end {
			if _, ok := patchOf[start+n]; !ok {
				break
			}
			n++
		}
		if n > 0 {
			it := &captionItem{nPatch: n, prompt: append([]int32(nil), b.Tokens[r*T+start:r*T+start+n]...)}
			for j := range n {
				i := patchOf[start+j]
				it.patches = append(it.patches, b.Patches[i*P:(i+1)*P]...)
			}
			text := b.Tokens[r*T+start+n : r*T+end]
			if len(text) < len(d.pre) || !slices.Equal(text[:len(d.pre)], d.pre) {
				return nil, usererr.New(where, "caption %q does not start with the caption prefix %q", d.tok.Decode(text), d.tok.Decode(d.pre))
			}
			it.prompt = append(it.prompt, d.pre...)
			rest := text[len(d.pre):]
			for k, t := range rest {
				if d.isNewline(t) {
					rest = rest[:k+1]
					break
				}
			}
			it.draft = append([]int32(nil), rest...)
			it.want = d.text(rest)
			out = append(out, it)
		}
		start = end
	}
	return out, nil
}

// decode runs drafted greedy decoding on at most micro_batch items until each is done.
func (d *decoder) decode(items []*captionItem) {
	m := d.tr.Model
	V, seqLen := m.Cfg.VocabSize, m.Cfg.SeqLen
	for {
		var live []*captionItem
		T := 0
		for _, it := range items {
			if it.done {
				continue
			}
			if len(it.got) >= captionMaxTokens || len(it.prompt)+len(it.got) > seqLen {
				it.done = true // no room for another token
				continue
			}
			// The prompt, what is confirmed and the draft fit in seq_len.
			it.draft = it.draft[:min(len(it.draft), seqLen-len(it.prompt)-len(it.got))]
			live = append(live, it)
			T = max(T, len(it.prompt)+len(it.got)+len(it.draft))
		}
		if len(live) == 0 {
			return
		}
		b := &d.batch
		b.Resize(len(live), T)
		clear(b.Tokens)
		clear(b.Targets)
		clear(b.Mask)
		for r, it := range live {
			seq := append(append(append([]int32(nil), it.prompt...), it.got...), it.draft...)
			copy(b.Tokens[r*T:], seq)
			for t := range T {
				b.Pos[r*T+t] = int32(t)
				b.Doc[r*T+t] = 0
				if t >= len(seq) { // padding after the item: a document of its own
					b.Pos[r*T+t], b.Doc[r*T+t] = int32(t-len(seq)), 1
				}
			}
			for j := range it.nPatch {
				b.PatchAt = append(b.PatchAt, int32(r*T+j))
			}
			b.Patches = append(b.Patches, it.patches...)
		}
		m.Forward(b)
		logits := kernels.ToHost(d.tr.opts.Backend, m.Logits()) // the logits' read-back
		for r, it := range live {
			// Position p predicts the token at p+1: the first prediction is the one after the
			// prompt and what is confirmed; then one per drafted token.
			p := r*T + len(it.prompt) + len(it.got) - 1
			draft := it.draft
			it.draft = nil
			for j := 0; ; j++ {
				next := model.Argmax(logits[(p+j)*V : (p+j+1)*V])
				it.got = append(it.got, next)
				if d.isNewline(next) || len(it.got) >= captionMaxTokens {
					it.done = true
					break
				}
				if j == len(draft) || draft[j] != next {
					break // a new token past the draft, or a correction: the next pass continues it
				}
			}
		}
	}
}

// text decodes ids, up to and without the first newline.
func (d *decoder) text(ids []int32) string {
	s, _, _ := strings.Cut(d.tok.Decode(ids), "\n")
	return s
}

func (d *decoder) isNewline(t int32) bool {
	nl, ok := d.newline[t]
	if !ok {
		nl = strings.Contains(d.tok.Decode([]int32{t}), "\n")
		d.newline[t] = nl
	}
	return nl
}
