package cpu

// float32 attention on the GEMM micro-kernel directly. The generic path (ops_attention.go)
// calls MatMul per block, which packs both operands of every product again: K and V once
// per query block, and every packing pass costs about as much as the block's arithmetic
// at these sizes (D = 64). Here each head's K and V are packed once, into the panel
// layouts that every block's products read (Kᵀ panels for Q·Kᵀ, V panels for P·V, ...),
// straight from the strided [B*T, heads*D] buffers, and the micro-kernel writes its tiles
// into padded buffers, so there are no edge tiles. Per query block only Q (and dout), the
// probabilities and their gradients are packed; where the kernel set reads A in place
// (kernelA, AVX-512), only their last panel of fewer than mr rows and the transposed
// probabilities of the key and value gradients are. Same blocks, same mask, same softmax
// code as the generic path; the products are summed in a different order, so the results
// differ from it in the last bits (both are checked against float64).
//
// Sizes: nr-wide panels of keys, tPad = T rounded up to nr; dPad = D rounded up to nr;
// a query block has nq <= attnBlock rows in ceil(nq/mr) mr-tall panels.

// attnDims are the padded sizes of one call.
type attnDims struct {
	g                    *gemmImpl
	t, d, mr, nr         int
	tPad, dPad, qPad     int // keys, head dim, query block rows, padded
	keyPanels, dimPanels int
}

func newAttnDims(g *gemmImpl, t, d int) attnDims {
	a := attnDims{g: g, t: t, d: d, mr: g.mr, nr: g.nr}
	a.tPad, a.dPad, a.qPad = roundUp(t, a.nr), roundUp(d, a.nr), roundUp(min(attnBlock, t), a.mr)
	a.keyPanels, a.dimPanels = a.tPad/a.nr, a.dPad/a.nr
	return a
}

// packKeysT packs the keys of one head, src [T, D] with row stride ld, as Kᵀ: panel j holds
// keys j·nr.. as dst[j·D·nr + p·nr + i] = src[(j·nr+i)·ld + p], zero past T.
func (a *attnDims) packKeysT(dst, src []float32, ld int) {
	for j := range a.keyPanels {
		a.g.packB(dst[j*a.d*a.nr:(j+1)*a.d*a.nr], src, ld, 0, 0, a.d, j*a.nr, min(a.nr, a.t-j*a.nr), true)
	}
}

// packRows packs src [T, D] with row stride ld in panels of nr columns of D over all
// keys: dst[q·tPad·nr + s·nr + j] = src[s·ld + q·nr + j], zero past T and past D.
func (a *attnDims) packRows(dst, src []float32, ld int) {
	for q := range a.dimPanels {
		p := dst[q*a.tPad*a.nr : (q+1)*a.tPad*a.nr]
		a.g.packB(p, src, 0, ld, 0, a.t, q*a.nr, min(a.nr, a.d-q*a.nr), false)
		clear(p[a.t*a.nr:])
	}
}

// rowPanels is the A operand of a block's products: nq rows of src (row stride ld) from
// row i0, k columns each, in mr-row panels. Full panels are read in place where the
// kernel set can (kernelA), the others are packed into buf (panel r at r·k·mr).
type rowPanels struct {
	src        []float32
	ld, i0, nq int
	k          int
	buf        []float32
	inPlace    bool
}

// rows packs what the products cannot read in place of rows [i0, i0+nq) of src.
func (a *attnDims) rows(buf, src []float32, ld, i0, nq, k int) rowPanels {
	rp := rowPanels{src: src, ld: ld, i0: i0, nq: nq, k: k, buf: buf, inPlace: a.g.kernelA != nil}
	for r := 0; r*a.mr < nq; r++ {
		if rows := min(a.mr, nq-r*a.mr); !rp.inPlace || rows < a.mr {
			a.g.packA(buf[r*k*a.mr:(r+1)*k*a.mr], src, 0, ld, i0+r*a.mr, rows, 0, k, false)
		}
	}
	return rp
}

// mul computes the tile of row panel r times the B panel b into c (row stride ldc), or adds
// it to c.
func (a *attnDims) mul(rp *rowPanels, r int, b, c []float32, ldc int, add bool) {
	if rp.inPlace && rp.nq-r*a.mr >= a.mr {
		a.g.kernelA(rp.k, rp.src[(rp.i0+r*a.mr)*rp.ld:], rp.ld, b, c, ldc, add)
		return
	}
	a.g.kernel(rp.k, rp.buf[r*rp.k*a.mr:(r+1)*rp.k*a.mr], b, c, ldc, add)
}

// logits writes s[r·nk + c] = q_r·k_(k0+c) for the block's rows (q, over D) and the key
// panels from k0 = kq·nr on, nk = nkq·nr keys.
func (a *attnDims) logits(s []float32, q *rowPanels, kT []float32, kq, nkq int) {
	nk := nkq * a.nr
	for r := 0; r*a.mr < q.nq; r++ {
		for j := range nkq {
			a.mul(q, r, kT[(kq+j)*a.d*a.nr:(kq+j+1)*a.d*a.nr], s[r*a.mr*nk+j*a.nr:], nk, false)
		}
	}
}

// rowsTimesPanels writes c[r·dPad + j] = Σ_c p[r, c]·x[k0 + c, j] for the block's rows:
// p [nq, nk] row-major is the A operand (panels that cannot be read in place are packed
// into ap), x is packed by packRows (key k0's row starts k0·nr into each panel), k0 = kq·nr.
func (a *attnDims) rowsTimesPanels(c, ap, p, x []float32, nq, kq, nk int) {
	rp := a.rows(ap, p, nk, 0, nq, nk)
	for r := 0; r*a.mr < nq; r++ {
		for q := range a.dimPanels {
			xp := x[q*a.tPad*a.nr+kq*a.nr*a.nr : (q+1)*a.tPad*a.nr]
			a.mul(&rp, r, xp, c[r*a.mr*a.dPad+q*a.nr:], a.dPad, false)
		}
	}
}

// keysTimesRows accumulates c[(k0 + i)·dPad + j] += Σ_r p[r, i]·y[r, j] over the keys
// of the block: p [nq, nk] is packed transposed as A (into ap), y [nq, D] rows of stride
// ld are packed as B (into bp); k0 = kq·nr. c has tPad + mr rows.
func (a *attnDims) keysTimesRows(c, ap, bp, p, y []float32, ld, nq, kq, nk int) {
	for q := range a.dimPanels {
		a.g.packB(bp[q*nq*a.nr:(q+1)*nq*a.nr], y, 0, ld, 0, nq, q*a.nr, min(a.nr, a.d-q*a.nr), false)
	}
	for r := 0; r*a.mr < nk; r++ {
		a.g.packA(ap[:nq*a.mr], p, nk, 0, r*a.mr, min(a.mr, nk-r*a.mr), 0, nq, true)
		for q := range a.dimPanels {
			a.g.kernel(nq, ap[:nq*a.mr], bp[q*nq*a.nr:(q+1)*nq*a.nr], c[(kq*a.nr+r*a.mr)*a.dPad+q*a.nr:], a.dPad, true)
		}
	}
}

// scratch returns one recycled buffer cut into parts of the given sizes (at most 16).
func scratch(sizes []int) (*[]float32, [16][]float32) {
	total := 0
	for _, n := range sizes {
		total += n
	}
	buf := getBuf[float32](total)
	var parts [16][]float32
	rest := *buf
	for i, n := range sizes {
		parts[i], rest = rest[:n:n], rest[n:]
	}
	return buf, parts
}

// attentionForward32 is attention.run's work for float32: heads [lo, hi) of b·H.
func attentionForward32(g *gemmImpl, out, lse, q, k, v []float32, doc []int32, t, h, kv, d int, scale float32, lo, hi int) {
	a := newAttnDims(g, t, d)
	nkMax := a.tPad
	sizes := [...]int{a.keyPanels * d * a.nr, a.dimPanels * a.tPad * a.nr, a.qPad * d, a.qPad * nkMax, a.qPad * nkMax, a.qPad * a.dPad}
	buf, parts := scratch(sizes[:])
	defer putBuf(buf)
	firstBuf := getBuf[int32](t)
	defer putBuf(firstBuf)
	kT, vP, aq, s, ap, o := parts[0], parts[1], parts[2], parts[3], parts[4], parts[5]
	first := *firstBuf
	grp := h / kv
	for task := lo; task < hi; task++ {
		bi, hh := task/h, task%h
		seq := doc[bi*t : bi*t+t]
		docRuns(first, seq)
		qh := q[bi*t*h*d+hh*d:]
		a.packKeysT(kT, k[bi*t*kv*d+hh/grp*d:], kv*d)
		a.packRows(vP, v[bi*t*kv*d+hh/grp*d:], kv*d)
		for blk := range (t + attnBlock - 1) / attnBlock {
			i0, i1 := blk*attnBlock, min(blk*attnBlock+attnBlock, t)
			nq, kq := i1-i0, attnSpan(seq, i0, i1)/a.nr
			k0, nkq := kq*a.nr, (i1-kq*a.nr+a.nr-1)/a.nr
			nk := nkq * a.nr
			qs := a.rows(aq, qh, h*d, i0, nq, d)
			a.logits(s, &qs, kT, kq, nkq)
			for r := range nq {
				lse[(bi*t+i0+r)*h+hh] = softmaxRow(g, s[r*nk:r*nk+nk], first, seq, k0, i0+r, scale)
			}
			a.rowsTimesPanels(o, ap, s, vP, nq, kq, nk)
			for r := range nq {
				at := (bi*t+i0+r)*h*d + hh*d
				copy(out[at:at+d], o[r*a.dPad:r*a.dPad+d])
			}
		}
	}
}

// attentionBackward32 is attentionBackward.run's work for float32: (sequence, kv head)
// pairs [lo, hi) of b·KV.
func attentionBackward32(g *gemmImpl, dq, dk, dv, dout, out, lse, q, k, v []float32, doc []int32, t, h, kv, d int, scale float32, lo, hi int) {
	a := newAttnDims(g, t, d)
	nkMax, rowsPad := a.tPad, a.tPad+a.mr
	sizes := [...]int{a.keyPanels * d * a.nr, a.keyPanels * d * a.nr, a.dimPanels * a.tPad * a.nr, rowsPad * a.dPad, rowsPad * a.dPad,
		a.qPad * d, a.qPad * d, a.qPad * nkMax, a.qPad * nkMax, max(a.qPad*nkMax, nkMax*a.mr), a.dimPanels * a.qPad * a.nr, a.qPad * a.dPad, t}
	buf, parts := scratch(sizes[:])
	defer putBuf(buf)
	firstBuf := getBuf[int32](t)
	defer putBuf(firstBuf)
	kT, vT, kP, dK, dV := parts[0], parts[1], parts[2], parts[3], parts[4]
	aq, ado, p, ds, ap, bp, dqb, delta := parts[5], parts[6], parts[7], parts[8], parts[9], parts[10], parts[11], parts[12]
	first := *firstBuf
	grp := h / kv
	for task := lo; task < hi; task++ {
		bi, kh := task/kv, task%kv
		seq := doc[bi*t : bi*t+t]
		docRuns(first, seq)
		kh0, vh0 := k[bi*t*kv*d+kh*d:], v[bi*t*kv*d+kh*d:]
		a.packKeysT(kT, kh0, kv*d)
		a.packKeysT(vT, vh0, kv*d)
		a.packRows(kP, kh0, kv*d)
		clear(dK)
		clear(dV)
		for hh := kh * grp; hh < kh*grp+grp; hh++ {
			qh, doh := q[bi*t*h*d+hh*d:], dout[bi*t*h*d+hh*d:]
			outputDots(g, delta, dout, out, bi, t, h, hh, d)
			for blk := range (t + attnBlock - 1) / attnBlock {
				i0, i1 := blk*attnBlock, min(blk*attnBlock+attnBlock, t)
				nq, kq := i1-i0, attnSpan(seq, i0, i1)/a.nr
				k0, nkq := kq*a.nr, (i1-kq*a.nr+a.nr-1)/a.nr
				nk := nkq * a.nr
				qs, dos := a.rows(aq, qh, h*d, i0, nq, d), a.rows(ado, doh, h*d, i0, nq, d)
				a.logits(p, &qs, kT, kq, nkq)
				a.logits(ds, &dos, vT, kq, nkq)
				for r := range nq {
					ti := i0 + r
					softmaxGradRow(g, p[r*nk:r*nk+nk], ds[r*nk:r*nk+nk], first, seq, k0, ti, scale, lse[(bi*t+ti)*h+hh], delta[ti])
				}
				a.rowsTimesPanels(dqb, ap, ds, kP, nq, kq, nk)
				for r := range nq {
					at := (bi*t+i0+r)*h*d + hh*d
					axpyTo(g, dq[at:at+d], dqb[r*a.dPad:r*a.dPad+d], 1)
				}
				a.keysTimesRows(dK, ap, bp, ds, qh[i0*h*d:], h*d, nq, kq, nk)
				a.keysTimesRows(dV, ap, bp, p, doh[i0*h*d:], h*d, nq, kq, nk)
			}
		}
		for r := range t {
			at := (bi*t+r)*kv*d + kh*d
			axpyTo(g, dk[at:at+d], dK[r*a.dPad:r*a.dPad+d], 1)
			axpyTo(g, dv[at:at+d], dV[r*a.dPad:r*a.dPad+d], 1)
		}
	}
}
