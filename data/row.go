package data

// Row is one packed training sequence as stored: L = T+1 tokens, so that inputs are
// tokens[0:T] and targets tokens[1:T+1]. It is the unit every Source reads and every
// packer writes (one Arrow row per Row).
type Row struct {
	Tokens []int32 // [L] token ids
	Docs   []int32 // document segment lengths, summing to L; position ids restart per segment
	// NoLoss lists [start, end) token ranges that are never trained as targets: padding,
	// prompts of fine-tuning data, image placeholders. Pairs, increasing, within [0, L).
	NoLoss []int32
	// Images lists [start, patches) pairs: an image's patches sit at token positions
	// start .. start+patches-1 (early fusion), and its pixels follow in Pixels.
	Images []int32
	Pixels []uint8 // [patches*P] per image, in Images order, patch-major; value/255 is in [0, 1]
}

// fill writes row r into sequence j of b, which must be sized for T = len(r.Tokens)-1.
// Target t is token t+1. It is masked out where token t+1 starts a new document (nothing
// is trained across a document boundary), lies in a NoLoss range, or is an image patch.
// Pixels of patches at input positions < T are appended to b.Patches.
func (r *Row) fill(b *Batch, j int) {
	T := b.T
	base := j * T
	copy(b.Tokens[base:base+T], r.Tokens[:T])
	copy(b.Targets[base:base+T], r.Tokens[1:T+1])
	mask := b.Mask[base : base+T]
	for t := range mask {
		mask[t] = 1
	}
	start := 0
	for d, n := range r.Docs {
		end := min(start+int(n), T)
		for t := start; t < end; t++ {
			b.Doc[base+t] = int32(d)
			b.Pos[base+t] = int32(t - start)
		}
		if start > 0 {
			mask[start-1] = 0 // token `start` begins document d: do not predict it
		}
		start += int(n)
		if start > T {
			break
		}
	}
	noLoss := func(from, to int) { // no target whose token lies in [from, to)
		for t := max(from-1, 0); t < min(to-1, T); t++ {
			mask[t] = 0
		}
	}
	for i := 0; i+1 < len(r.NoLoss); i += 2 {
		noLoss(int(r.NoLoss[i]), int(r.NoLoss[i+1]))
	}
	P := 0
	if n := patchCount(r.Images); n > 0 {
		P = len(r.Pixels) / n
	}
	px := r.Pixels
	for i := 0; i+1 < len(r.Images); i += 2 {
		at, n := int(r.Images[i]), int(r.Images[i+1])
		noLoss(at, at+n)
		for p := 0; p < n; p++ {
			if at+p < T {
				b.PatchAt = append(b.PatchAt, int32(base+at+p))
				for _, v := range px[:P] {
					b.Patches = append(b.Patches, float32(v)/255)
				}
			}
			px = px[P:]
		}
	}
}

func patchCount(images []int32) int {
	n := 0
	for i := 1; i < len(images); i += 2 {
		n += int(images[i])
	}
	return n
}
