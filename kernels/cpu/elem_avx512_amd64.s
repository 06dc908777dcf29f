//go:build !purego

#include "textflag.h"

// AVX-512 elementwise kernels: 16 float32 lanes per step, a masked step for the tail.
// The exponential is Cephes' expf: x = n·ln2 + r, |r| <= ln2/2 (ln2 in two parts so that
// r is exact), e^r by a degree-7 polynomial, then VSCALEFPS multiplies by 2ⁿ. Inputs are
// clamped to [-150, 89] first (NaN kept: the clamps return x when it is NaN), so that
// e^-Inf and anything below -103.3 give exactly 0 and anything above 88.7 gives +Inf.

DATA expc<>+0(SB)/4, $0x3fb8aa3b  // log2(e)
DATA expc<>+4(SB)/4, $0x3f318000  // ln2, high part 0.693359375
DATA expc<>+8(SB)/4, $0xb95e8083  // ln2, low part -2.12194440e-4
DATA expc<>+12(SB)/4, $0x39506967 // p0 1.9875691500e-4
DATA expc<>+16(SB)/4, $0x3ab743ce // p1 1.3981999507e-3
DATA expc<>+20(SB)/4, $0x3c088908 // p2 8.3334519073e-3
DATA expc<>+24(SB)/4, $0x3d2aa9c1 // p3 4.1665795894e-2
DATA expc<>+28(SB)/4, $0x3e2aaaaa // p4 1.6666665459e-1
DATA expc<>+32(SB)/4, $0x3f000000 // p5 0.5
DATA expc<>+36(SB)/4, $0x3f800000 // 1
DATA expc<>+40(SB)/4, $0xc3160000 // -150
DATA expc<>+44(SB)/4, $0x42b20000 // 89
GLOBL expc<>(SB), RODATA|NOPTR, $48

// Constants live in Z16..Z27 for the whole call.
#define LOADEXPC \
	VBROADCASTSS expc<>+0(SB), Z16; \
	VBROADCASTSS expc<>+4(SB), Z17; \
	VBROADCASTSS expc<>+8(SB), Z18; \
	VBROADCASTSS expc<>+12(SB), Z19; \
	VBROADCASTSS expc<>+16(SB), Z20; \
	VBROADCASTSS expc<>+20(SB), Z21; \
	VBROADCASTSS expc<>+24(SB), Z22; \
	VBROADCASTSS expc<>+28(SB), Z23; \
	VBROADCASTSS expc<>+32(SB), Z24; \
	VBROADCASTSS expc<>+36(SB), Z25; \
	VBROADCASTSS expc<>+40(SB), Z26; \
	VBROADCASTSS expc<>+44(SB), Z27

// EXP: x = e^x, lane by lane; t1..t3 are scratch.
//   x = min(max(x, -150), 89); n = round(x·log2e); r = x - n·ln2hi - n·ln2lo
//   p = ((((p0·r + p1)·r + p2)·r + p3)·r + p4)·r + p5; x = (p·r² + r + 1)·2ⁿ
#define EXP(x, t1, t2, t3) \
	VMAXPS       x, Z26, x; \
	VMINPS       x, Z27, x; \
	VMULPS       Z16, x, t1; \
	VRNDSCALEPS  $0, t1, t1; \
	VFNMADD231PS Z17, t1, x; \
	VFNMADD231PS Z18, t1, x; \
	VMOVAPS      Z19, t2; \
	VFMADD213PS  Z20, x, t2; \
	VFMADD213PS  Z21, x, t2; \
	VFMADD213PS  Z22, x, t2; \
	VFMADD213PS  Z23, x, t2; \
	VFMADD213PS  Z24, x, t2; \
	VMULPS       x, x, t3; \
	VFMADD213PS  x, t3, t2; \
	VADDPS       Z25, t2, t2; \
	VSCALEFPS    t1, t2, x

// TAILMASK: K1 = the low CX lanes (0 < CX < 16).
#define TAILMASK \
	MOVL  $1, AX; \
	SHLL  CX, AX; \
	DECL  AX; \
	KMOVW AX, K1

// func expShift16(x []float32, shift float32) float32
//
//	for i := range x { x[i] = exp(x[i] - shift); sum += x[i] }
//
// The sum runs in 16 lanes (lane j adds elements j, j+16, ...), which are then added in a
// fixed order: the result depends on len(x) only.
TEXT ·expShift16(SB), NOSPLIT, $0-36
	MOVQ         x_base+0(FP), SI
	MOVQ         x_len+8(FP), CX
	VBROADCASTSS shift+24(FP), Z15
	LOADEXPC
	VPXORD       Z14, Z14, Z14

es_loop:
	CMPQ    CX, $16
	JLT     es_tail
	VMOVUPS (SI), Z0
	VSUBPS  Z15, Z0, Z0
	EXP(Z0, Z1, Z2, Z3)
	VMOVUPS Z0, (SI)
	VADDPS  Z0, Z14, Z14
	ADDQ    $64, SI
	SUBQ    $16, CX
	JMP     es_loop

es_tail:
	TESTQ     CX, CX
	JZ        es_sum
	TAILMASK
	VMOVUPS.Z (SI), K1, Z0
	VSUBPS    Z15, Z0, Z0
	EXP(Z0, Z1, Z2, Z3)
	VMOVUPS   Z0, K1, (SI)
	VADDPS    Z0, Z14, K1, Z14

es_sum:
	// Lanes 0..7 += 8..15, then 0..3 += 4..7, then pairs, then the last two.
	VEXTRACTF64X4 $1, Z14, Y1
	VADDPS        Y1, Y14, Y14
	VEXTRACTF128  $1, Y14, X1
	VADDPS        X1, X14, X14
	VPERMILPS     $0x4e, X14, X1
	VADDPS        X1, X14, X14
	VPERMILPS     $0xb1, X14, X1
	VADDPS        X1, X14, X14
	VZEROUPPER
	MOVSS         X14, ret+32(FP)
	RET

// func swiGLU16(out, sig, a, u []float32)
//
//	for i := range out { sig[i] = 1 / (1 + exp(-a[i])); out[i] = a[i] * sig[i] * u[i] }
TEXT ·swiGLU16(SB), NOSPLIT, $0-96
	MOVQ    out_base+0(FP), DI
	MOVQ    out_len+8(FP), CX
	MOVQ    sig_base+24(FP), R8
	MOVQ    a_base+48(FP), SI
	MOVQ    u_base+72(FP), DX
	LOADEXPC
	VPXORD  Z15, Z15, Z15

sw_loop:
	CMPQ    CX, $16
	JLT     sw_tail
	VMOVUPS (SI), Z4
	VSUBPS  Z4, Z15, Z0
	EXP(Z0, Z1, Z2, Z3)
	VADDPS  Z25, Z0, Z0
	VDIVPS  Z0, Z25, Z0
	VMOVUPS Z0, (R8)
	VMULPS  Z0, Z4, Z4
	VMULPS  (DX), Z4, Z4
	VMOVUPS Z4, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DX
	ADDQ    $64, R8
	ADDQ    $64, DI
	SUBQ    $16, CX
	JMP     sw_loop

sw_tail:
	TESTQ     CX, CX
	JZ        sw_done
	TAILMASK
	VMOVUPS.Z (SI), K1, Z4
	VMOVUPS.Z (DX), K1, Z5
	VSUBPS    Z4, Z15, Z0
	EXP(Z0, Z1, Z2, Z3)
	VADDPS    Z25, Z0, Z0
	VDIVPS    Z0, Z25, Z0
	VMOVUPS   Z0, K1, (R8)
	VMULPS    Z0, Z4, Z4
	VMULPS    Z5, Z4, Z4
	VMOVUPS   Z4, K1, (DI)

sw_done:
	VZEROUPPER
	RET

// func swiGLUBackward16(da, du, dout, a, u, sig []float32)
//
//	for i := range dout {
//		du[i] += dout[i] * a[i] * sig[i]
//		da[i] += dout[i] * u[i] * sig[i] * (1 + a[i]*(1-sig[i]))
//	}
TEXT ·swiGLUBackward16(SB), NOSPLIT, $0-144
	MOVQ         da_base+0(FP), DI
	MOVQ         du_base+24(FP), R9
	MOVQ         dout_base+48(FP), R10
	MOVQ         dout_len+56(FP), CX
	MOVQ         a_base+72(FP), SI
	MOVQ         u_base+96(FP), DX
	MOVQ         sig_base+120(FP), R8
	VBROADCASTSS expc<>+36(SB), Z25
	XORQ         BX, BX
	MOVW         $0xffff, AX
	KMOVW        AX, K1

sb_loop:
	CMPQ      CX, $16
	JGE       sb_step
	TESTQ     CX, CX
	JZ        sb_done
	TAILMASK

sb_step:
	VMOVUPS.Z (R10)(BX*4), K1, Z0 // dout
	VMOVUPS.Z (SI)(BX*4), K1, Z1  // a
	VMOVUPS.Z (R8)(BX*4), K1, Z2  // s
	VMOVUPS.Z (DX)(BX*4), K1, Z3  // u
	VMULPS    Z1, Z0, Z4          // dout·a
	VMULPS    Z2, Z4, Z4          // ·s
	VMOVUPS.Z (R9)(BX*4), K1, Z7
	VADDPS    Z7, Z4, Z4
	VMOVUPS   Z4, K1, (R9)(BX*4)
	VSUBPS    Z2, Z25, Z5         // 1-s
	VMULPS    Z5, Z1, Z5          // a·(1-s)
	VADDPS    Z25, Z5, Z5         // 1 + a·(1-s)
	VMULPS    Z3, Z0, Z6          // dout·u
	VMULPS    Z2, Z6, Z6          // ·s
	VMULPS    Z5, Z6, Z6          // ·(1 + a·(1-s))
	VMOVUPS.Z (DI)(BX*4), K1, Z7
	VADDPS    Z7, Z6, Z6
	VMOVUPS   Z6, K1, (DI)(BX*4)
	ADDQ      $16, BX
	SUBQ      $16, CX
	JG        sb_loop

sb_done:
	VZEROUPPER
	RET

// func scaleMax16(x []float32, s float32) float32
//
//	mx := -Inf; for i := range x { x[i] *= s; mx = max(mx, x[i]) }; return mx
//
// (NaN in x need not come out as the maximum: its exponential is NaN anyway.)
TEXT ·scaleMax16(SB), NOSPLIT, $0-36
	MOVQ         x_base+0(FP), SI
	MOVQ         x_len+8(FP), CX
	VBROADCASTSS s+24(FP), Z15
	MOVL         $0xff800000, AX // -Inf
	VPBROADCASTD AX, Z14
	MOVW         $0xffff, AX
	KMOVW        AX, K1

sm_loop:
	CMPQ      CX, $16
	JGE       sm_step
	TESTQ     CX, CX
	JZ        sm_done
	TAILMASK

sm_step:
	VMOVUPS.Z (SI), K1, Z0
	VMULPS    Z15, Z0, Z0
	VMOVUPS   Z0, K1, (SI)
	VMAXPS    Z0, Z14, K1, Z14
	ADDQ      $64, SI
	SUBQ      $16, CX
	JG        sm_loop

sm_done:
	VEXTRACTF64X4 $1, Z14, Y1
	VMAXPS        Y1, Y14, Y14
	VEXTRACTF128  $1, Y14, X1
	VMAXPS        X1, X14, X14
	VPERMILPS     $0x4e, X14, X1
	VMAXPS        X1, X14, X14
	VPERMILPS     $0xb1, X14, X1
	VMAXPS        X1, X14, X14
	VZEROUPPER
	MOVSS         X14, ret+32(FP)
	RET

// func scale16(x []float32, s float32)
//
//	for i := range x { x[i] *= s }
TEXT ·scale16(SB), NOSPLIT, $0-28
	MOVQ         x_base+0(FP), SI
	MOVQ         x_len+8(FP), CX
	VBROADCASTSS s+24(FP), Z15
	MOVW         $0xffff, AX
	KMOVW        AX, K1

sc_loop:
	CMPQ      CX, $16
	JGE       sc_step
	TESTQ     CX, CX
	JZ        sc_done
	TAILMASK

sc_step:
	VMOVUPS.Z (SI), K1, Z0
	VMULPS    Z15, Z0, Z0
	VMOVUPS   Z0, K1, (SI)
	ADDQ      $64, SI
	SUBQ      $16, CX
	JG        sc_loop

sc_done:
	VZEROUPPER
	RET

// func axpy16(y, x []float32, a float32)
//
//	for i := range y { y[i] += a * x[i] }   (a multiply, then an add: no fused rounding)
TEXT ·axpy16(SB), NOSPLIT, $0-52
	MOVQ         y_base+0(FP), DI
	MOVQ         y_len+8(FP), CX
	MOVQ         x_base+24(FP), SI
	VBROADCASTSS a+48(FP), Z15
	MOVW         $0xffff, AX
	KMOVW        AX, K1

ax_loop:
	CMPQ      CX, $16
	JGE       ax_step
	TESTQ     CX, CX
	JZ        ax_done
	TAILMASK

ax_step:
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z (DI), K1, Z1
	VMULPS    Z15, Z0, Z0
	VADDPS    Z0, Z1, Z1
	VMOVUPS   Z1, K1, (DI)
	ADDQ      $64, SI
	ADDQ      $64, DI
	SUBQ      $16, CX
	JG        ax_loop

ax_done:
	VZEROUPPER
	RET

// func mulAdd16(y, a, b []float32, s float32)
//
//	for i := range y { y[i] += a[i] * b[i] * s }   (left to right, no fused rounding)
TEXT ·mulAdd16(SB), NOSPLIT, $0-76
	MOVQ         y_base+0(FP), DI
	MOVQ         y_len+8(FP), CX
	MOVQ         a_base+24(FP), SI
	MOVQ         b_base+48(FP), DX
	VBROADCASTSS s+72(FP), Z15
	MOVW         $0xffff, AX
	KMOVW        AX, K1

ma_loop:
	CMPQ      CX, $16
	JGE       ma_step
	TESTQ     CX, CX
	JZ        ma_done
	TAILMASK

ma_step:
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z (DX), K1, Z1
	VMOVUPS.Z (DI), K1, Z2
	VMULPS    Z1, Z0, Z0
	VMULPS    Z15, Z0, Z0
	VADDPS    Z0, Z2, Z2
	VMOVUPS   Z2, K1, (DI)
	ADDQ      $64, SI
	ADDQ      $64, DX
	ADDQ      $64, DI
	SUBQ      $16, CX
	JG        ma_loop

ma_done:
	VZEROUPPER
	RET

// func softmaxGrad16(d, p []float32, dt, s float32)
//
//	for i := range d { d[i] = s * p[i] * (d[i] - dt) }   (left to right)
TEXT ·softmaxGrad16(SB), NOSPLIT, $0-56
	MOVQ         d_base+0(FP), DI
	MOVQ         d_len+8(FP), CX
	MOVQ         p_base+24(FP), SI
	VBROADCASTSS dt+48(FP), Z14
	VBROADCASTSS s+52(FP), Z15
	MOVW         $0xffff, AX
	KMOVW        AX, K1

sg_loop:
	CMPQ      CX, $16
	JGE       sg_step
	TESTQ     CX, CX
	JZ        sg_done
	TAILMASK

sg_step:
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z (DI), K1, Z1
	VMULPS    Z0, Z15, Z0
	VSUBPS    Z14, Z1, Z1
	VMULPS    Z1, Z0, Z0
	VMOVUPS   Z0, K1, (DI)
	ADDQ      $64, SI
	ADDQ      $64, DI
	SUBQ      $16, CX
	JG        sg_loop

sg_done:
	VZEROUPPER
	RET

// func packB32(dst, b []float32, ldb, kb int)
//
//	for p := range kb { copy(dst[p*32:p*32+32], b[p*ldb:p*ldb+32]) }
//
// packB's loop for 32 full columns of an untransposed b.
TEXT ·packB32(SB), NOSPLIT, $0-64
	MOVQ dst_base+0(FP), DI
	MOVQ b_base+24(FP), SI
	MOVQ ldb+48(FP), DX
	SHLQ $2, DX
	MOVQ kb+56(FP), CX
	TESTQ CX, CX
	JZ   pb_done

pb_loop:
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z1
	VMOVUPS Z0, (DI)
	VMOVUPS Z1, 64(DI)
	ADDQ    DX, SI
	ADDQ    $128, DI
	DECQ    CX
	JNZ     pb_loop

pb_done:
	VZEROUPPER
	RET

// LANESUM: X14 = the sum of Z14's 16 lanes in a fixed order: lanes 0..7 += 8..15, then
// 0..3 += 4..7, then 0,1 += 2,3, then 0 += 1 (the order of laneSum in vec.go).
#define LANESUM \
	VEXTRACTF64X4 $1, Z14, Y1; \
	VADDPS        Y1, Y14, Y14; \
	VEXTRACTF128  $1, Y14, X1; \
	VADDPS        X1, X14, X14; \
	VPERMILPS     $0x4e, X14, X1; \
	VADDPS        X1, X14, X14; \
	VPERMILPS     $0xb1, X14, X1; \
	VADDPS        X1, X14, X14

// func dot3_16(a, b, c []float32) float32
//
//	lane j sums a[i]*b[i]*c[i] (left to right) for i = j, j+16, ...; then LANESUM
TEXT ·dot3_16(SB), NOSPLIT, $0-76
	MOVQ   a_base+0(FP), SI
	MOVQ   a_len+8(FP), CX
	MOVQ   b_base+24(FP), DX
	MOVQ   c_base+48(FP), DI
	VPXORD Z14, Z14, Z14
	MOVW   $0xffff, AX
	KMOVW  AX, K1

d3_loop:
	CMPQ      CX, $16
	JGE       d3_step
	TESTQ     CX, CX
	JZ        d3_done
	TAILMASK

d3_step:
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z (DX), K1, Z1
	VMOVUPS.Z (DI), K1, Z2
	VMULPS    Z1, Z0, Z0
	VMULPS    Z2, Z0, Z0
	VADDPS    Z0, Z14, K1, Z14
	ADDQ      $64, SI
	ADDQ      $64, DX
	ADDQ      $64, DI
	SUBQ      $16, CX
	JG        d3_loop

d3_done:
	LANESUM
	VZEROUPPER
	MOVSS X14, ret+72(FP)
	RET

// func normRow16(out, x, g []float32, r float32)
//
//	for j := range out { out[j] = x[j] * r * g[j] }   (left to right)
TEXT ·normRow16(SB), NOSPLIT, $0-76
	MOVQ         out_base+0(FP), DI
	MOVQ         out_len+8(FP), CX
	MOVQ         x_base+24(FP), SI
	MOVQ         g_base+48(FP), DX
	VBROADCASTSS r+72(FP), Z15
	MOVW         $0xffff, AX
	KMOVW        AX, K1

nr_loop:
	CMPQ      CX, $16
	JGE       nr_step
	TESTQ     CX, CX
	JZ        nr_done
	TAILMASK

nr_step:
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z (DX), K1, Z1
	VMULPS    Z15, Z0, Z0
	VMULPS    Z1, Z0, Z0
	VMOVUPS   Z0, K1, (DI)
	ADDQ      $64, SI
	ADDQ      $64, DX
	ADDQ      $64, DI
	SUBQ      $16, CX
	JG        nr_loop

nr_done:
	VZEROUPPER
	RET

// func normRowBackward16(dx, d, g, x []float32, r, corr float32)
//
//	for j := range dx { dx[j] += r * (d[j]*g[j] - x[j]*corr) }
TEXT ·normRowBackward16(SB), NOSPLIT, $0-104
	MOVQ         dx_base+0(FP), DI
	MOVQ         dx_len+8(FP), CX
	MOVQ         d_base+24(FP), SI
	MOVQ         g_base+48(FP), DX
	MOVQ         x_base+72(FP), R8
	VBROADCASTSS r+96(FP), Z15
	VBROADCASTSS corr+100(FP), Z14
	MOVW         $0xffff, AX
	KMOVW        AX, K1

nb_loop:
	CMPQ      CX, $16
	JGE       nb_step
	TESTQ     CX, CX
	JZ        nb_done
	TAILMASK

nb_step:
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z (DX), K1, Z1
	VMOVUPS.Z (R8), K1, Z2
	VMOVUPS.Z (DI), K1, Z3
	VMULPS    Z1, Z0, Z0  // d·g
	VMULPS    Z14, Z2, Z2 // x·corr
	VSUBPS    Z2, Z0, Z0
	VMULPS    Z0, Z15, Z0 // r·(…)
	VADDPS    Z0, Z3, Z3
	VMOVUPS   Z3, K1, (DI)
	ADDQ      $64, SI
	ADDQ      $64, DX
	ADDQ      $64, R8
	ADDQ      $64, DI
	SUBQ      $16, CX
	JG        nb_loop

nb_done:
	VZEROUPPER
	RET

// func sumSquares16(x []float32) float32
//
//	lane j sums x[i]*x[i] for i = j, j+16, ...; then LANESUM
TEXT ·sumSquares16(SB), NOSPLIT, $0-28
	MOVQ   x_base+0(FP), SI
	MOVQ   x_len+8(FP), CX
	VPXORD Z14, Z14, Z14
	MOVW   $0xffff, AX
	KMOVW  AX, K1

ss_loop:
	CMPQ      CX, $16
	JGE       ss_step
	TESTQ     CX, CX
	JZ        ss_done
	TAILMASK

ss_step:
	VMOVUPS.Z (SI), K1, Z0
	VMULPS    Z0, Z0, Z0
	VADDPS    Z0, Z14, K1, Z14
	ADDQ      $64, SI
	SUBQ      $16, CX
	JG        ss_loop

ss_done:
	LANESUM
	VZEROUPPER
	MOVSS X14, ret+24(FP)
	RET

// func adamW16(p, g, m, v []float32, c AdamWCoeffs)
//
//	adamWGo's loop in float32, 16 lanes per step, the same operations in the same order,
//	none fused; the coefficients are converted from float64 once, as the twin does.
TEXT ·adamW16(SB), NOSPLIT, $0-168
	MOVQ         p_base+0(FP), DI
	MOVQ         p_len+8(FP), CX
	MOVQ         g_base+24(FP), SI
	MOVQ         m_base+48(FP), R8
	MOVQ         v_base+72(FP), R9
	VCVTSD2SS    c_B1+96(FP), X16, X16
	VBROADCASTSS X16, Z16
	VCVTSD2SS    c_C1+104(FP), X17, X17
	VBROADCASTSS X17, Z17
	VCVTSD2SS    c_B2+112(FP), X18, X18
	VBROADCASTSS X18, Z18
	VCVTSD2SS    c_C2+120(FP), X19, X19
	VBROADCASTSS X19, Z19
	VCVTSD2SS    c_Decay+128(FP), X20, X20
	VBROADCASTSS X20, Z20
	VCVTSD2SS    c_StepSize+136(FP), X21, X21
	VBROADCASTSS X21, Z21
	VCVTSD2SS    c_BC2Sqrt+144(FP), X22, X22
	VBROADCASTSS X22, Z22
	VCVTSD2SS    c_Eps+152(FP), X23, X23
	VBROADCASTSS X23, Z23
	VCVTSD2SS    c_GScale+160(FP), X24, X24
	VBROADCASTSS X24, Z24
	MOVW         $0xffff, AX
	KMOVW        AX, K1

aw_loop:
	CMPQ  CX, $16
	JGE   aw_step
	TESTQ CX, CX
	JZ    aw_done
	TAILMASK

aw_step:
	VMOVUPS.Z (SI), K1, Z0
	VMULPS    Z24, Z0, Z0 // gr = g·gscale
	VMOVUPS.Z (R8), K1, Z1
	VMULPS    Z16, Z1, Z1 // m·β1
	VMULPS    Z17, Z0, Z2 // gr·(1-β1)
	VADDPS    Z2, Z1, Z1  // m
	VMOVUPS.Z (R9), K1, Z3
	VMULPS    Z18, Z3, Z3 // v·β2
	VMULPS    Z0, Z0, Z4  // gr·gr
	VMULPS    Z19, Z4, Z4 // ·(1-β2)
	VADDPS    Z4, Z3, Z3  // v
	VMOVUPS   Z1, K1, (R8)
	VMOVUPS   Z3, K1, (R9)
	VSQRTPS   Z3, Z3
	VDIVPS    Z22, Z3, Z3 // sqrt(v)/sqrt(bc2)
	VADDPS    Z23, Z3, Z3 // + eps
	VDIVPS    Z3, Z1, Z1  // m/denom
	VMULPS    Z21, Z1, Z1 // ·step size
	VMOVUPS.Z (DI), K1, Z5
	VMULPS    Z20, Z5, Z5 // p·decay
	VSUBPS    Z1, Z5, Z5
	VMOVUPS   Z5, K1, (DI)
	ADDQ      $64, SI
	ADDQ      $64, DI
	ADDQ      $64, R8
	ADDQ      $64, R9
	SUBQ      $16, CX
	JG        aw_loop

aw_done:
	VZEROUPPER
	RET

// ropeidx: lane 2j and 2j+1 take element j (VPERMPS duplicates 8 cosines into 8 pairs).
DATA ropeidx<>+0(SB)/4, $0
DATA ropeidx<>+4(SB)/4, $0
DATA ropeidx<>+8(SB)/4, $1
DATA ropeidx<>+12(SB)/4, $1
DATA ropeidx<>+16(SB)/4, $2
DATA ropeidx<>+20(SB)/4, $2
DATA ropeidx<>+24(SB)/4, $3
DATA ropeidx<>+28(SB)/4, $3
DATA ropeidx<>+32(SB)/4, $4
DATA ropeidx<>+36(SB)/4, $4
DATA ropeidx<>+40(SB)/4, $5
DATA ropeidx<>+44(SB)/4, $5
DATA ropeidx<>+48(SB)/4, $6
DATA ropeidx<>+52(SB)/4, $6
DATA ropeidx<>+56(SB)/4, $7
DATA ropeidx<>+60(SB)/4, $7
GLOBL ropeidx<>(SB), RODATA|NOPTR, $64

// ropealt: -1 in the even lanes, +1 in the odd ones.
DATA ropealt<>+0(SB)/8, $0x3f800000bf800000
DATA ropealt<>+8(SB)/8, $0x3f800000bf800000
DATA ropealt<>+16(SB)/8, $0x3f800000bf800000
DATA ropealt<>+24(SB)/8, $0x3f800000bf800000
DATA ropealt<>+32(SB)/8, $0x3f800000bf800000
DATA ropealt<>+40(SB)/8, $0x3f800000bf800000
DATA ropealt<>+48(SB)/8, $0x3f800000bf800000
DATA ropealt<>+56(SB)/8, $0x3f800000bf800000
GLOBL ropealt<>(SB), RODATA|NOPTR, $64

// func rope16(x, cs, sn []float32, heads int, sign float32)
//
//	for each of heads heads of x (2·len(cs) elements each), for each pair j:
//	  s := sign * sn[j]; a, b := x[2j], x[2j+1]; x[2j], x[2j+1] = a*c - b*s, a*s + b*c
//
// 8 pairs per step: with c and s duplicated into both lanes of each pair and x' = x with
// the lanes of each pair swapped, x·c + x'·(-s, s) is the same two products and one sum
// per lane (negating s is exact), so the bits are the loop's.
TEXT ·rope16(SB), NOSPLIT, $0-84
	MOVQ         x_base+0(FP), DI
	MOVQ         cs_base+24(FP), SI
	MOVQ         cs_len+32(FP), BX
	MOVQ         sn_base+48(FP), R8
	MOVQ         heads+72(FP), R9
	VBROADCASTSS sign+80(FP), Z29
	VMOVUPS      ropealt<>(SB), Z30
	VMOVUPS      ropeidx<>(SB), Z31

rp_head:
	TESTQ R9, R9
	JZ    rp_done
	MOVQ  DI, R12 // the head's first element
	MOVQ  SI, R10
	MOVQ  R8, R11
	MOVQ  BX, CX  // pairs left
	MOVW  $0xffff, AX
	KMOVW AX, K1  // x lanes
	MOVW  $0xff, AX
	KMOVW AX, K2  // cos and sin lanes

rp_loop:
	CMPQ  CX, $8
	JGE   rp_step
	TESTQ CX, CX
	JZ    rp_next
	MOVL  $1, AX
	SHLL  CX, AX
	DECL  AX
	KMOVW AX, K2 // CX pairs
	SHLQ  $1, CX
	MOVL  $1, AX
	SHLL  CX, AX
	DECL  AX
	KMOVW AX, K1 // 2·CX elements
	SHRQ  $1, CX

rp_step:
	VMOVUPS.Z (R10), K2, Z0
	VPERMPS   Z0, Z31, Z0  // c in both lanes of each pair
	VMOVUPS.Z (R11), K2, Z1
	VPERMPS   Z1, Z31, Z1
	VMULPS    Z29, Z1, Z1  // s = sign·sin
	VMULPS    Z30, Z1, Z1  // (-s, s)
	VMOVUPS.Z (DI), K1, Z2
	VPERMILPS $0xb1, Z2, Z3 // (b, a)
	VMULPS    Z0, Z2, Z2   // (a·c, b·c)
	VMULPS    Z1, Z3, Z3   // (-b·s, a·s)
	VADDPS    Z3, Z2, Z2
	VMOVUPS   Z2, K1, (DI)
	ADDQ      $32, R10
	ADDQ      $32, R11
	ADDQ      $64, DI
	SUBQ      $8, CX
	JG        rp_loop

rp_next:
	LEAQ (R12)(BX*8), DI // next head: 2·len(cs) elements on
	DECQ R9
	JMP  rp_head

rp_done:
	VZEROUPPER
	RET

// func sumSquares8d(x []float32) float64
//
//	lane j sums float64(x[i])² for i = j, j+8, ...; then lanes 0..3 += 4..7, 0,1 += 2,3,
//	0 += 1
TEXT ·sumSquares8d(SB), NOSPLIT, $0-32
	MOVQ   x_base+0(FP), SI
	MOVQ   x_len+8(FP), CX
	VPXORQ Z14, Z14, Z14
	MOVW   $0xff, AX
	KMOVW  AX, K1

s8_loop:
	CMPQ  CX, $8
	JGE   s8_step
	TESTQ CX, CX
	JZ    s8_done
	TAILMASK

s8_step:
	VMOVUPS.Z (SI), K1, Z0
	VCVTPS2PD Y0, Z0
	VMULPD    Z0, Z0, Z0
	VADDPD    Z0, Z14, Z14 // zeroed tail lanes add +0
	ADDQ      $32, SI
	SUBQ      $8, CX
	JG        s8_loop

s8_done:
	VEXTRACTF64X4 $1, Z14, Y1
	VADDPD        Y1, Y14, Y14
	VEXTRACTF128  $1, Y14, X1
	VADDPD        X1, X14, X14
	VPERMILPD     $1, X14, X1
	VADDSD        X1, X14, X14
	VZEROUPPER
	MOVSD X14, ret+24(FP)
	RET

// func dot2_16(a, b []float32) float32
//
//	lane j sums a[i]*b[i] for i = j, j+16, ...; then LANESUM
TEXT ·dot2_16(SB), NOSPLIT, $0-52
	MOVQ   a_base+0(FP), SI
	MOVQ   a_len+8(FP), CX
	MOVQ   b_base+24(FP), DX
	VPXORD Z14, Z14, Z14
	MOVW   $0xffff, AX
	KMOVW  AX, K1

d2_loop:
	CMPQ      CX, $16
	JGE       d2_step
	TESTQ     CX, CX
	JZ        d2_done
	TAILMASK

d2_step:
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z (DX), K1, Z1
	VMULPS    Z1, Z0, Z0
	VADDPS    Z0, Z14, K1, Z14
	ADDQ      $64, SI
	ADDQ      $64, DX
	SUBQ      $16, CX
	JG        d2_loop

d2_done:
	LANESUM
	VZEROUPPER
	MOVSS X14, ret+48(FP)
	RET
