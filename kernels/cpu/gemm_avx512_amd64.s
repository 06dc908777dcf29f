//go:build !purego

#include "textflag.h"

// AVX-512 float32 GEMM micro-kernel, 14×32: c[i, j] (+)= Σ_p a[p*14+i]·b[p*32+j].
// Accumulators: Z0..Z27, row i in Z(2i) (columns 0..15) and Z(2i+1) (columns 16..31).
// Z28, Z29 hold the step's 32 elements of B; Z30, Z31 alternate as the broadcast A[i].

#define KLEFT CX // steps left
#define APAN SI  // packed A panel, 14 floats per step
#define BPAN DI  // packed B panel, 32 floats per step
#define CROW DX  // row i of c
#define LDC R8   // row stride of c in bytes

// ROW: acc0, acc1 += A[i] · B, with A[i] at off(APAN).
#define ROW(off, bc, acc0, acc1) \
	VBROADCASTSS off(APAN), bc; \
	VFMADD231PS  Z28, bc, acc0; \
	VFMADD231PS  Z29, bc, acc1

// STEP: one p; all 14 rows; advance the panels.
#define STEP \
	VMOVUPS (BPAN), Z28; \
	VMOVUPS 64(BPAN), Z29; \
	ROW(0, Z30, Z0, Z1); \
	ROW(4, Z31, Z2, Z3); \
	ROW(8, Z30, Z4, Z5); \
	ROW(12, Z31, Z6, Z7); \
	ROW(16, Z30, Z8, Z9); \
	ROW(20, Z31, Z10, Z11); \
	ROW(24, Z30, Z12, Z13); \
	ROW(28, Z31, Z14, Z15); \
	ROW(32, Z30, Z16, Z17); \
	ROW(36, Z31, Z18, Z19); \
	ROW(40, Z30, Z20, Z21); \
	ROW(44, Z31, Z22, Z23); \
	ROW(48, Z30, Z24, Z25); \
	ROW(52, Z31, Z26, Z27); \
	ADDQ $56, APAN; \
	ADDQ $128, BPAN

// PREFETCHC: fetch row i of c into L1 now, so that it has arrived when the tile is
// stored; the rows are ldc apart and the hardware prefetcher does not follow them.
#define PREFETCHC \
	PREFETCHT0 (R9); \
	PREFETCHT0 64(R9); \
	ADDQ       LDC, R9

// STORE: row i of c = acc0, acc1; next row.
#define STORE(acc0, acc1) \
	VMOVUPS acc0, (CROW); \
	VMOVUPS acc1, 64(CROW); \
	ADDQ    LDC, CROW

// ADDSTORE: row i of c += acc0, acc1; next row.
#define ADDSTORE(acc0, acc1) \
	VADDPS  (CROW), acc0, acc0; \
	VADDPS  64(CROW), acc1, acc1; \
	VMOVUPS acc0, (CROW); \
	VMOVUPS acc1, 64(CROW); \
	ADDQ    LDC, CROW

// STARTTILE prefetches the tile's 14 rows of c (from CROW) and zeroes the 28 accumulators.
#define STARTTILE \
	MOVQ CROW, R9; \
	PREFETCHC; \
	PREFETCHC; \
	PREFETCHC; \
	PREFETCHC; \
	PREFETCHC; \
	PREFETCHC; \
	PREFETCHC; \
	PREFETCHC; \
	PREFETCHC; \
	PREFETCHC; \
	PREFETCHC; \
	PREFETCHC; \
	PREFETCHC; \
	PREFETCHC; \
	VPXORD Z0, Z0, Z0; \
	VPXORD Z1, Z1, Z1; \
	VPXORD Z2, Z2, Z2; \
	VPXORD Z3, Z3, Z3; \
	VPXORD Z4, Z4, Z4; \
	VPXORD Z5, Z5, Z5; \
	VPXORD Z6, Z6, Z6; \
	VPXORD Z7, Z7, Z7; \
	VPXORD Z8, Z8, Z8; \
	VPXORD Z9, Z9, Z9; \
	VPXORD Z10, Z10, Z10; \
	VPXORD Z11, Z11, Z11; \
	VPXORD Z12, Z12, Z12; \
	VPXORD Z13, Z13, Z13; \
	VPXORD Z14, Z14, Z14; \
	VPXORD Z15, Z15, Z15; \
	VPXORD Z16, Z16, Z16; \
	VPXORD Z17, Z17, Z17; \
	VPXORD Z18, Z18, Z18; \
	VPXORD Z19, Z19, Z19; \
	VPXORD Z20, Z20, Z20; \
	VPXORD Z21, Z21, Z21; \
	VPXORD Z22, Z22, Z22; \
	VPXORD Z23, Z23, Z23; \
	VPXORD Z24, Z24, Z24; \
	VPXORD Z25, Z25, Z25; \
	VPXORD Z26, Z26, Z26; \
	VPXORD Z27, Z27, Z27

// func sgemmKernel14x32(k int, a, b, c []float32, ldc int, add bool)
TEXT ·sgemmKernel14x32(SB), NOSPLIT, $0-89
	MOVQ k+0(FP), KLEFT
	MOVQ a_base+8(FP), APAN
	MOVQ b_base+32(FP), BPAN
	MOVQ c_base+56(FP), CROW
	MOVQ ldc+80(FP), LDC
	SHLQ $2, LDC

	STARTTILE

	// for ; k >= 4; k -= 4 { STEP ×4 }
	CMPQ KLEFT, $4
	JLT  tail

loop4:
	STEP
	STEP
	STEP
	STEP
	SUBQ $4, KLEFT
	CMPQ KLEFT, $4
	JGE  loop4

tail:
	// for ; k > 0; k-- { STEP }
	TESTQ KLEFT, KLEFT
	JEQ   store

loop1:
	STEP
	DECQ KLEFT
	JNZ  loop1

store:
	MOVBLZX add+88(FP), AX
	TESTQ   AX, AX
	JNZ     accumulate

	// c = acc
	STORE(Z0, Z1)
	STORE(Z2, Z3)
	STORE(Z4, Z5)
	STORE(Z6, Z7)
	STORE(Z8, Z9)
	STORE(Z10, Z11)
	STORE(Z12, Z13)
	STORE(Z14, Z15)
	STORE(Z16, Z17)
	STORE(Z18, Z19)
	STORE(Z20, Z21)
	STORE(Z22, Z23)
	STORE(Z24, Z25)
	STORE(Z26, Z27)
	VZEROUPPER
	RET

accumulate:
	// c += acc
	ADDSTORE(Z0, Z1)
	ADDSTORE(Z2, Z3)
	ADDSTORE(Z4, Z5)
	ADDSTORE(Z6, Z7)
	ADDSTORE(Z8, Z9)
	ADDSTORE(Z10, Z11)
	ADDSTORE(Z12, Z13)
	ADDSTORE(Z14, Z15)
	ADDSTORE(Z16, Z17)
	ADDSTORE(Z18, Z19)
	ADDSTORE(Z20, Z21)
	ADDSTORE(Z22, Z23)
	ADDSTORE(Z24, Z25)
	ADDSTORE(Z26, Z27)
	VZEROUPPER
	RET

// The same kernel on an unpacked A: row i of the tile is op(a)'s row i in place, lda
// elements after row i-1 (an untransposed a), so the GEMM does not pack A at all. The 14
// rows are addressed from five pointers, to rows 0, 3, 6, 9 and 12 (SI, R11..R14), each
// plus 0, 1, 2, 4 or 8 times the row stride (R10); all five advance one element per step.
// The sums are the packed kernel's, in the same order.
#define STEPA(off) \
	VMOVUPS (BPAN), Z28; \
	VMOVUPS 64(BPAN), Z29; \
	VBROADCASTSS off(SI), Z30; \
	VFMADD231PS  Z28, Z30, Z0; \
	VFMADD231PS  Z29, Z30, Z1; \
	VBROADCASTSS off(SI)(R10*1), Z31; \
	VFMADD231PS  Z28, Z31, Z2; \
	VFMADD231PS  Z29, Z31, Z3; \
	VBROADCASTSS off(SI)(R10*2), Z30; \
	VFMADD231PS  Z28, Z30, Z4; \
	VFMADD231PS  Z29, Z30, Z5; \
	VBROADCASTSS off(R11), Z31; \
	VFMADD231PS  Z28, Z31, Z6; \
	VFMADD231PS  Z29, Z31, Z7; \
	VBROADCASTSS off(SI)(R10*4), Z30; \
	VFMADD231PS  Z28, Z30, Z8; \
	VFMADD231PS  Z29, Z30, Z9; \
	VBROADCASTSS off(R11)(R10*2), Z31; \
	VFMADD231PS  Z28, Z31, Z10; \
	VFMADD231PS  Z29, Z31, Z11; \
	VBROADCASTSS off(R12), Z30; \
	VFMADD231PS  Z28, Z30, Z12; \
	VFMADD231PS  Z29, Z30, Z13; \
	VBROADCASTSS off(R11)(R10*4), Z31; \
	VFMADD231PS  Z28, Z31, Z14; \
	VFMADD231PS  Z29, Z31, Z15; \
	VBROADCASTSS off(SI)(R10*8), Z30; \
	VFMADD231PS  Z28, Z30, Z16; \
	VFMADD231PS  Z29, Z30, Z17; \
	VBROADCASTSS off(R13), Z31; \
	VFMADD231PS  Z28, Z31, Z18; \
	VFMADD231PS  Z29, Z31, Z19; \
	VBROADCASTSS off(R12)(R10*4), Z30; \
	VFMADD231PS  Z28, Z30, Z20; \
	VFMADD231PS  Z29, Z30, Z21; \
	VBROADCASTSS off(R11)(R10*8), Z31; \
	VFMADD231PS  Z28, Z31, Z22; \
	VFMADD231PS  Z29, Z31, Z23; \
	VBROADCASTSS off(R14), Z30; \
	VFMADD231PS  Z28, Z30, Z24; \
	VFMADD231PS  Z29, Z30, Z25; \
	VBROADCASTSS off(R13)(R10*4), Z31; \
	VFMADD231PS  Z28, Z31, Z26; \
	VFMADD231PS  Z29, Z31, Z27; \
	ADDQ $128, BPAN

// ADVANCEA: the five row pointers move n bytes on.
#define ADVANCEA(n) \
	ADDQ $n, SI; \
	ADDQ $n, R11; \
	ADDQ $n, R12; \
	ADDQ $n, R13; \
	ADDQ $n, R14

// func sgemmKernel14x32A(k int, a []float32, lda int, b, c []float32, ldc int, add bool)
TEXT ·sgemmKernel14x32A(SB), NOSPLIT, $0-97
	MOVQ k+0(FP), KLEFT
	MOVQ a_base+8(FP), SI
	MOVQ lda+32(FP), R10
	SHLQ $2, R10
	LEAQ (R10)(R10*2), AX // 3 rows
	LEAQ (SI)(AX*1), R11
	LEAQ (R11)(AX*1), R12
	LEAQ (R12)(AX*1), R13
	LEAQ (R13)(AX*1), R14
	MOVQ b_base+40(FP), BPAN
	MOVQ c_base+64(FP), CROW
	MOVQ ldc+88(FP), LDC
	SHLQ $2, LDC

	STARTTILE

	// for ; k >= 4; k -= 4 { STEPA ×4 }
	CMPQ KLEFT, $4
	JLT  tailA

loop4A:
	STEPA(0)
	STEPA(4)
	STEPA(8)
	STEPA(12)
	ADVANCEA(16)
	SUBQ $4, KLEFT
	CMPQ KLEFT, $4
	JGE  loop4A

tailA:
	// for ; k > 0; k-- { STEPA }
	TESTQ KLEFT, KLEFT
	JEQ   storeA

loop1A:
	STEPA(0)
	ADVANCEA(4)
	DECQ KLEFT
	JNZ  loop1A

storeA:
	MOVBLZX add+96(FP), AX
	TESTQ   AX, AX
	JNZ     accumulateA

	// c = acc
	STORE(Z0, Z1)
	STORE(Z2, Z3)
	STORE(Z4, Z5)
	STORE(Z6, Z7)
	STORE(Z8, Z9)
	STORE(Z10, Z11)
	STORE(Z12, Z13)
	STORE(Z14, Z15)
	STORE(Z16, Z17)
	STORE(Z18, Z19)
	STORE(Z20, Z21)
	STORE(Z22, Z23)
	STORE(Z24, Z25)
	STORE(Z26, Z27)
	VZEROUPPER
	RET

accumulateA:
	// c += acc
	ADDSTORE(Z0, Z1)
	ADDSTORE(Z2, Z3)
	ADDSTORE(Z4, Z5)
	ADDSTORE(Z6, Z7)
	ADDSTORE(Z8, Z9)
	ADDSTORE(Z10, Z11)
	ADDSTORE(Z12, Z13)
	ADDSTORE(Z14, Z15)
	ADDSTORE(Z16, Z17)
	ADDSTORE(Z18, Z19)
	ADDSTORE(Z20, Z21)
	ADDSTORE(Z22, Z23)
	ADDSTORE(Z24, Z25)
	ADDSTORE(Z26, Z27)
	VZEROUPPER
	RET
