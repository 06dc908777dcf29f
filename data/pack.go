package data

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/herdml/herd/internal/usererr"
)

// Doc is one document to pack: its tokens, with image patches placed at some positions.
type Doc struct {
	Where  string  // file (and line or record) it came from, for errors
	Tokens []int32 // token ids; ids at image positions are placeholders
	NoLoss []int32 // [start, end) pairs of positions not trained as targets (prompts)
	Images []int32 // [start, patches) pairs, as in Row
	Pixels []uint8 // patches' pixels, as in Row
	Whole  bool    // never split across rows (a chat conversation), as a document with images
}

// Packer cuts a stream of documents into rows of L tokens. Text documents fill rows
// completely and continue in the next row, exactly as the text Source cuts a corpus.
// Documents with images, and Whole ones, are never split: one that does not fit in what is left of a row
// starts a new row, and the rest of the old one is padding.
type Packer struct {
	L    int
	Pad  int32 // padding token, never trained on
	Emit func(*Row) error

	cur Row
}

// Add packs one document.
func (p *Packer) Add(d *Doc) error {
	if len(d.Tokens) == 0 {
		return nil
	}
	if len(d.Images) > 0 || d.Whole {
		if len(d.Tokens) > p.L {
			return usererr.New(d.Where, "a document with an image needs %d positions but a row holds seq_len+1 = %d; raise seq_len or shorten the caption", len(d.Tokens), p.L)
		}
		if len(p.cur.Tokens)+len(d.Tokens) > p.L {
			if err := p.finish(); err != nil {
				return err
			}
		}
		at := int32(len(p.cur.Tokens))
		p.cur.Tokens = append(p.cur.Tokens, d.Tokens...)
		p.cur.Docs = append(p.cur.Docs, int32(len(d.Tokens)))
		for i := 0; i+1 < len(d.NoLoss); i += 2 {
			p.cur.NoLoss = append(p.cur.NoLoss, at+d.NoLoss[i], at+d.NoLoss[i+1])
		}
		for i := 0; i+1 < len(d.Images); i += 2 {
			p.cur.Images = append(p.cur.Images, at+d.Images[i], d.Images[i+1])
		}
		p.cur.Pixels = append(p.cur.Pixels, d.Pixels...)
		if len(p.cur.Tokens) == p.L {
			return p.emit()
		}
		return nil
	}
	for lo := 0; lo < len(d.Tokens); {
		hi := min(lo+p.L-len(p.cur.Tokens), len(d.Tokens))
		at := int32(len(p.cur.Tokens))
		p.cur.Tokens = append(p.cur.Tokens, d.Tokens[lo:hi]...)
		p.cur.Docs = append(p.cur.Docs, int32(hi-lo))
		for i := 0; i+1 < len(d.NoLoss); i += 2 { // the part of each range inside [lo, hi)
			a, b := max(int(d.NoLoss[i]), lo), min(int(d.NoLoss[i+1]), hi)
			if a < b {
				p.cur.NoLoss = append(p.cur.NoLoss, at+int32(a-lo), at+int32(b-lo))
			}
		}
		lo = hi
		if len(p.cur.Tokens) == p.L {
			if err := p.emit(); err != nil {
				return err
			}
		}
	}
	return nil
}

// finish pads the open row, if any, and emits it.
func (p *Packer) finish() error {
	n := len(p.cur.Tokens)
	if n == 0 {
		return nil
	}
	for len(p.cur.Tokens) < p.L {
		p.cur.Tokens = append(p.cur.Tokens, p.Pad)
	}
	p.cur.Docs = append(p.cur.Docs, int32(p.L-n))
	p.cur.NoLoss = append(p.cur.NoLoss, int32(n), int32(p.L))
	return p.emit()
}

func (p *Packer) emit() error {
	err := p.Emit(&p.cur)
	p.cur.Tokens, p.cur.Docs, p.cur.NoLoss, p.cur.Images, p.cur.Pixels =
		p.cur.Tokens[:0], p.cur.Docs[:0], p.cur.NoLoss[:0], p.cur.Images[:0], p.cur.Pixels[:0]
	return err
}

// Close pads and emits the last row.
func (p *Packer) Close() error { return p.finish() }

// RawDoc is a document before tokenization: text, optionally after an image.
type RawDoc struct {
	Where string
	Text  []byte
	Image *Image // nil for text; else its patches come first, then Text (the caption)
	// Tokenize, if set, makes the document instead of Text and Image: a chat conversation,
	// which its template renders and marks (see ChatFiles). It runs on the packer's workers.
	Tokenize func(Tokenizer) (*Doc, error)
}

// Image is an 8-bit image, row-major, channels interleaved.
type Image struct {
	H, W, C int
	Pix     []uint8 // [H*W*C]
}

// Patches cuts the image into p×p patches in row-major patch order, each patch row-major
// with channels interleaved: the layout of Row.Pixels. H and W must be multiples of p.
func (im *Image) Patches(p int, dst []uint8) []uint8 {
	for py := 0; py < im.H; py += p {
		for px := 0; px < im.W; px += p {
			for y := py; y < py+p; y++ {
				row := (y*im.W + px) * im.C
				dst = append(dst, im.Pix[row:row+p*im.C]...)
			}
		}
	}
	return dst
}

// Tokenize turns a raw document into a Doc. Image placeholders use the pad token.
func Tokenize(tok Tokenizer, patch int, pad int32, r *RawDoc) (*Doc, error) {
	if r.Tokenize != nil {
		return r.Tokenize(tok)
	}
	d := &Doc{Where: r.Where}
	if r.Image != nil {
		im := r.Image
		if patch <= 0 || im.H%patch != 0 || im.W%patch != 0 {
			return nil, usererr.New(r.Where, "image of %dx%d pixels does not divide into patches of %d; use --patch that divides both sides", im.W, im.H, patch)
		}
		n := (im.H / patch) * (im.W / patch)
		for range n {
			d.Tokens = append(d.Tokens, pad)
		}
		d.Images = []int32{0, int32(n)}
		d.Pixels = im.Patches(patch, nil)
	}
	d.Tokens = tok.Encode(d.Tokens, r.Text)
	return d, nil
}

// PackStream tokenizes the documents read calls emit with, in parallel but in order, and
// packs them; memory stays bounded by a window of documents in flight.
func PackStream(read func(emit func(*RawDoc) error) error, tok Tokenizer, patch int, pad int32, pk *Packer, counted func(tokens, docs int64)) error {
	workers := runtime.GOMAXPROCS(0)
	type job struct {
		raw  *RawDoc
		done chan struct{}
		doc  *Doc
		err  error
	}
	order := make(chan *job, 4*workers) // bounds the documents in flight
	todo := make(chan *job)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range todo {
				j.doc, j.err = Tokenize(tok, patch, pad, j.raw)
				j.raw = nil
				close(j.done)
			}
		}()
	}
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		defer close(order)
		defer close(todo)
		readErr <- read(func(r *RawDoc) error {
			j := &job{raw: r, done: make(chan struct{})}
			select {
			case order <- j:
			case <-stop:
				return errStopped
			}
			todo <- j
			return nil
		})
	}()
	var err error
	for j := range order {
		<-j.done
		if err == nil {
			err = j.err
		}
		if err == nil {
			if err = pk.Add(j.doc); err == nil && len(j.doc.Tokens) > 0 {
				counted(int64(len(j.doc.Tokens)), 1)
			}
		}
		if err != nil {
			select {
			case <-stop:
			default:
				close(stop)
			}
		}
	}
	wg.Wait()
	if rerr := <-readErr; err == nil && rerr != nil {
		err = rerr
	}
	if err == nil {
		err = pk.Close()
	}
	return err
}

var errStopped = fmt.Errorf("packing stopped")
