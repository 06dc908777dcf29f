//go:build !purego

#include "textflag.h"

// AVX2/FMA float32 GEMM micro-kernel, 6×16: c[i, j] (+)= Σ_p a[p*6+i]·b[p*16+j].
// Accumulators: Y0..Y11, row i in Y(2i) (columns 0..7) and Y(2i+1) (columns 8..15).
// Y12, Y13 hold the step's 16 elements of B; Y14, Y15 alternate as the broadcast A[i].

#define KLEFT CX // steps left
#define APAN SI  // packed A panel, 6 floats per step
#define BPAN DI  // packed B panel, 16 floats per step
#define CROW DX  // row i of c
#define LDC R8   // row stride of c in bytes

// ROW: acc0, acc1 += A[i] · B, with A[i] at off(APAN).
#define ROW(off, bc, acc0, acc1) \
	VBROADCASTSS off(APAN), bc; \
	VFMADD231PS  Y12, bc, acc0; \
	VFMADD231PS  Y13, bc, acc1

// STEP: one p; all 6 rows; advance the panels.
#define STEP \
	VMOVUPS (BPAN), Y12; \
	VMOVUPS 32(BPAN), Y13; \
	ROW(0, Y14, Y0, Y1); \
	ROW(4, Y15, Y2, Y3); \
	ROW(8, Y14, Y4, Y5); \
	ROW(12, Y15, Y6, Y7); \
	ROW(16, Y14, Y8, Y9); \
	ROW(20, Y15, Y10, Y11); \
	ADDQ $24, APAN; \
	ADDQ $64, BPAN

// PREFETCHC: fetch row i of c into L1 now, so that it has arrived when the tile is
// stored; the rows are ldc apart and the hardware prefetcher does not follow them.
#define PREFETCHC \
	PREFETCHT0 (R9); \
	PREFETCHT0 32(R9); \
	ADDQ       LDC, R9

// STORE: row i of c = acc0, acc1; next row.
#define STORE(acc0, acc1) \
	VMOVUPS acc0, (CROW); \
	VMOVUPS acc1, 32(CROW); \
	ADDQ    LDC, CROW

// ADDSTORE: row i of c += acc0, acc1; next row.
#define ADDSTORE(acc0, acc1) \
	VADDPS  (CROW), acc0, acc0; \
	VADDPS  32(CROW), acc1, acc1; \
	VMOVUPS acc0, (CROW); \
	VMOVUPS acc1, 32(CROW); \
	ADDQ    LDC, CROW

// func sgemmKernel6x16(k int, a, b, c []float32, ldc int, add bool)
TEXT ·sgemmKernel6x16(SB), NOSPLIT, $0-89
	MOVQ k+0(FP), KLEFT
	MOVQ a_base+8(FP), APAN
	MOVQ b_base+32(FP), BPAN
	MOVQ c_base+56(FP), CROW
	MOVQ ldc+80(FP), LDC
	SHLQ $2, LDC

	// prefetch the rows of c
	MOVQ CROW, R9
	PREFETCHC
	PREFETCHC
	PREFETCHC
	PREFETCHC
	PREFETCHC
	PREFETCHC

	// acc = 0
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

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
	STORE(Y0, Y1)
	STORE(Y2, Y3)
	STORE(Y4, Y5)
	STORE(Y6, Y7)
	STORE(Y8, Y9)
	STORE(Y10, Y11)
	VZEROUPPER
	RET

accumulate:
	// c += acc
	ADDSTORE(Y0, Y1)
	ADDSTORE(Y2, Y3)
	ADDSTORE(Y4, Y5)
	ADDSTORE(Y6, Y7)
	ADDSTORE(Y8, Y9)
	ADDSTORE(Y10, Y11)
	VZEROUPPER
	RET
