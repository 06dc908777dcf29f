//go:build !purego

#include "textflag.h"

// AVX-512 packing for the 14×32 kernel. The untransposed A and the transposed B are
// transposed on the way into their panels, 16 columns at a time, by TRANSPOSE16.

#define SRC SI   // a or b at the first column of the group
#define DST DI   // the panel
#define ROW R9   // the row being loaded
#define LDA R8   // row stride of the source in bytes

// TRANSPOSE16: Z0..Z15 = transpose of Z0..Z15 (Z(r)[c] becomes Z(c)[r]), through Z16..Z31.
// Stage 1 interleaves pairs of rows, stage 2 forms 4×4 blocks within 128-bit lanes,
// stages 3 and 4 exchange 128-bit lanes and 256-bit halves.
#define TRANSPOSE16 \
	VUNPCKLPS Z1, Z0, Z16; \
	VUNPCKHPS Z1, Z0, Z17; \
	VUNPCKLPS Z3, Z2, Z18; \
	VUNPCKHPS Z3, Z2, Z19; \
	VUNPCKLPS Z5, Z4, Z20; \
	VUNPCKHPS Z5, Z4, Z21; \
	VUNPCKLPS Z7, Z6, Z22; \
	VUNPCKHPS Z7, Z6, Z23; \
	VUNPCKLPS Z9, Z8, Z24; \
	VUNPCKHPS Z9, Z8, Z25; \
	VUNPCKLPS Z11, Z10, Z26; \
	VUNPCKHPS Z11, Z10, Z27; \
	VUNPCKLPS Z13, Z12, Z28; \
	VUNPCKHPS Z13, Z12, Z29; \
	VUNPCKLPS Z15, Z14, Z30; \
	VUNPCKHPS Z15, Z14, Z31; \
	VSHUFPS $0x44, Z18, Z16, Z0; \
	VSHUFPS $0xee, Z18, Z16, Z1; \
	VSHUFPS $0x44, Z19, Z17, Z2; \
	VSHUFPS $0xee, Z19, Z17, Z3; \
	VSHUFPS $0x44, Z22, Z20, Z4; \
	VSHUFPS $0xee, Z22, Z20, Z5; \
	VSHUFPS $0x44, Z23, Z21, Z6; \
	VSHUFPS $0xee, Z23, Z21, Z7; \
	VSHUFPS $0x44, Z26, Z24, Z8; \
	VSHUFPS $0xee, Z26, Z24, Z9; \
	VSHUFPS $0x44, Z27, Z25, Z10; \
	VSHUFPS $0xee, Z27, Z25, Z11; \
	VSHUFPS $0x44, Z30, Z28, Z12; \
	VSHUFPS $0xee, Z30, Z28, Z13; \
	VSHUFPS $0x44, Z31, Z29, Z14; \
	VSHUFPS $0xee, Z31, Z29, Z15; \
	VSHUFF32X4 $0x88, Z4, Z0, Z16; \
	VSHUFF32X4 $0xdd, Z4, Z0, Z20; \
	VSHUFF32X4 $0x88, Z5, Z1, Z17; \
	VSHUFF32X4 $0xdd, Z5, Z1, Z21; \
	VSHUFF32X4 $0x88, Z6, Z2, Z18; \
	VSHUFF32X4 $0xdd, Z6, Z2, Z22; \
	VSHUFF32X4 $0x88, Z7, Z3, Z19; \
	VSHUFF32X4 $0xdd, Z7, Z3, Z23; \
	VSHUFF32X4 $0x88, Z12, Z8, Z24; \
	VSHUFF32X4 $0xdd, Z12, Z8, Z28; \
	VSHUFF32X4 $0x88, Z13, Z9, Z25; \
	VSHUFF32X4 $0xdd, Z13, Z9, Z29; \
	VSHUFF32X4 $0x88, Z14, Z10, Z26; \
	VSHUFF32X4 $0xdd, Z14, Z10, Z30; \
	VSHUFF32X4 $0x88, Z15, Z11, Z27; \
	VSHUFF32X4 $0xdd, Z15, Z11, Z31; \
	VSHUFF32X4 $0x88, Z24, Z16, Z0; \
	VSHUFF32X4 $0xdd, Z24, Z16, Z8; \
	VSHUFF32X4 $0x88, Z25, Z17, Z1; \
	VSHUFF32X4 $0xdd, Z25, Z17, Z9; \
	VSHUFF32X4 $0x88, Z26, Z18, Z2; \
	VSHUFF32X4 $0xdd, Z26, Z18, Z10; \
	VSHUFF32X4 $0x88, Z27, Z19, Z3; \
	VSHUFF32X4 $0xdd, Z27, Z19, Z11; \
	VSHUFF32X4 $0x88, Z28, Z20, Z4; \
	VSHUFF32X4 $0xdd, Z28, Z20, Z12; \
	VSHUFF32X4 $0x88, Z29, Z21, Z5; \
	VSHUFF32X4 $0xdd, Z29, Z21, Z13; \
	VSHUFF32X4 $0x88, Z30, Z22, Z6; \
	VSHUFF32X4 $0xdd, Z30, Z22, Z14; \
	VSHUFF32X4 $0x88, Z31, Z23, Z7; \
	VSHUFF32X4 $0xdd, Z31, Z23, Z15

// func packA14(dst, a []float32, lda, groups, rows int)
//
// dst[p*14+i] = a[i*lda+p] for i < rows <= 14 (zero for rows <= i < 14) and p < 16*groups:
// per group, the rows (then zero rows up to 16) transposed, then 16 runs of 14 elements
// stored through a 14-lane mask. Rows past rows are never read.
TEXT ·packA14(SB), NOSPLIT, $0-72
	MOVQ dst_base+0(FP), DST
	MOVQ a_base+24(FP), SRC
	MOVQ lda+48(FP), LDA
	SHLQ $2, LDA
	MOVQ groups+56(FP), CX
	MOVQ rows+64(FP), R10
	MOVL $0x3fff, AX
	KMOVW AX, K1
	TESTQ CX, CX
	JEQ  doneA

loopA:
	MOVQ SRC, ROW
	VMOVUPS (ROW), Z0
	CMPQ R10, $1
	JLE  zero1
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z1
	CMPQ R10, $2
	JLE  zero2
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z2
	CMPQ R10, $3
	JLE  zero3
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z3
	CMPQ R10, $4
	JLE  zero4
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z4
	CMPQ R10, $5
	JLE  zero5
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z5
	CMPQ R10, $6
	JLE  zero6
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z6
	CMPQ R10, $7
	JLE  zero7
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z7
	CMPQ R10, $8
	JLE  zero8
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z8
	CMPQ R10, $9
	JLE  zero9
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z9
	CMPQ R10, $10
	JLE  zero10
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z10
	CMPQ R10, $11
	JLE  zero11
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z11
	CMPQ R10, $12
	JLE  zero12
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z12
	CMPQ R10, $13
	JLE  zero13
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z13
	JMP  transA

zero1:
	VPXORD Z1, Z1, Z1
zero2:
	VPXORD Z2, Z2, Z2
zero3:
	VPXORD Z3, Z3, Z3
zero4:
	VPXORD Z4, Z4, Z4
zero5:
	VPXORD Z5, Z5, Z5
zero6:
	VPXORD Z6, Z6, Z6
zero7:
	VPXORD Z7, Z7, Z7
zero8:
	VPXORD Z8, Z8, Z8
zero9:
	VPXORD Z9, Z9, Z9
zero10:
	VPXORD Z10, Z10, Z10
zero11:
	VPXORD Z11, Z11, Z11
zero12:
	VPXORD Z12, Z12, Z12
zero13:
	VPXORD Z13, Z13, Z13

transA:
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	TRANSPOSE16
	VMOVUPS Z0, K1, 0(DST)
	VMOVUPS Z1, K1, 56(DST)
	VMOVUPS Z2, K1, 112(DST)
	VMOVUPS Z3, K1, 168(DST)
	VMOVUPS Z4, K1, 224(DST)
	VMOVUPS Z5, K1, 280(DST)
	VMOVUPS Z6, K1, 336(DST)
	VMOVUPS Z7, K1, 392(DST)
	VMOVUPS Z8, K1, 448(DST)
	VMOVUPS Z9, K1, 504(DST)
	VMOVUPS Z10, K1, 560(DST)
	VMOVUPS Z11, K1, 616(DST)
	VMOVUPS Z12, K1, 672(DST)
	VMOVUPS Z13, K1, 728(DST)
	VMOVUPS Z14, K1, 784(DST)
	VMOVUPS Z15, K1, 840(DST)
	ADDQ $64, SRC
	ADDQ $896, DST
	DECQ CX
	JNZ  loopA

doneA:
	VZEROUPPER
	RET

// func packA14T(dst, a []float32, lda, kb, rows int)
//
// The transposed case: op(a)'s rows are a's columns, so step p copies the rows contiguous
// elements a[p*lda : p*lda+rows] to dst[p*14 : p*14+14], zero past rows, through one
// masked load (rows lanes) and one masked store (14 lanes).
TEXT ·packA14T(SB), NOSPLIT, $0-72
	MOVQ  dst_base+0(FP), DST
	MOVQ  a_base+24(FP), SRC
	MOVQ  lda+48(FP), LDA
	SHLQ  $2, LDA
	MOVQ  rows+64(FP), CX
	MOVL  $1, AX
	SHLL  CX, AX
	DECL  AX
	KMOVW AX, K2
	MOVQ  kb+56(FP), CX
	MOVL  $0x3fff, AX
	KMOVW AX, K1
	TESTQ CX, CX
	JEQ   doneT

loopT:
	VMOVUPS.Z (SRC), K2, Z0
	VMOVUPS   Z0, K1, (DST)
	ADDQ      LDA, SRC
	ADDQ      $56, DST
	DECQ      CX
	JNZ       loopT

doneT:
	VZEROUPPER
	RET

// func packB32T(dst, b []float32, ldb, groups int)
//
// dst[p*32+j] = b[j*ldb+p] for 32 rows j of a b stored [n, k] and p < 16*groups: per group,
// rows 0..15 transposed into the left halves of 16 panel rows, rows 16..31 into the right.
TEXT ·packB32T(SB), NOSPLIT, $0-64
	MOVQ dst_base+0(FP), DST
	MOVQ b_base+24(FP), SRC
	MOVQ ldb+48(FP), LDA
	SHLQ $2, LDA
	MOVQ groups+56(FP), CX
	TESTQ CX, CX
	JEQ  doneB

loopB:
	MOVQ SRC, ROW
	VMOVUPS (ROW), Z0
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z1
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z2
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z3
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z4
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z5
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z6
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z7
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z8
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z9
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z10
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z11
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z12
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z13
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z14
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z15
	ADDQ    LDA, ROW
	TRANSPOSE16
	VMOVUPS Z0, 0(DST)
	VMOVUPS Z1, 128(DST)
	VMOVUPS Z2, 256(DST)
	VMOVUPS Z3, 384(DST)
	VMOVUPS Z4, 512(DST)
	VMOVUPS Z5, 640(DST)
	VMOVUPS Z6, 768(DST)
	VMOVUPS Z7, 896(DST)
	VMOVUPS Z8, 1024(DST)
	VMOVUPS Z9, 1152(DST)
	VMOVUPS Z10, 1280(DST)
	VMOVUPS Z11, 1408(DST)
	VMOVUPS Z12, 1536(DST)
	VMOVUPS Z13, 1664(DST)
	VMOVUPS Z14, 1792(DST)
	VMOVUPS Z15, 1920(DST)
	VMOVUPS (ROW), Z0
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z1
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z2
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z3
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z4
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z5
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z6
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z7
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z8
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z9
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z10
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z11
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z12
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z13
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z14
	ADDQ    LDA, ROW
	VMOVUPS (ROW), Z15
	ADDQ    LDA, ROW
	TRANSPOSE16
	VMOVUPS Z0, 64(DST)
	VMOVUPS Z1, 192(DST)
	VMOVUPS Z2, 320(DST)
	VMOVUPS Z3, 448(DST)
	VMOVUPS Z4, 576(DST)
	VMOVUPS Z5, 704(DST)
	VMOVUPS Z6, 832(DST)
	VMOVUPS Z7, 960(DST)
	VMOVUPS Z8, 1088(DST)
	VMOVUPS Z9, 1216(DST)
	VMOVUPS Z10, 1344(DST)
	VMOVUPS Z11, 1472(DST)
	VMOVUPS Z12, 1600(DST)
	VMOVUPS Z13, 1728(DST)
	VMOVUPS Z14, 1856(DST)
	VMOVUPS Z15, 1984(DST)
	ADDQ $64, SRC
	ADDQ $2048, DST
	DECQ CX
	JNZ  loopB

doneB:
	VZEROUPPER
	RET
