//go:build amd64 && !purego

#include "textflag.h"

// encodeSatAVX2 is the loop of (*fp8Format).encodeSat, 8 floats per step:
//
//	m = max(m, bits(x) & 0x7FFFFFFF)
//	b = bits(x * scale); a = b & 0x7FFFFFFF
//	sub = a < minNormal                       // the subnormal grid
//	code = sub ? bits(float(a) + magic) - bits(magic)
//	           : min((a + k + (a >> shift) & 1) >> shift, maxCode)
//	dst[i] = uint8(code | (b >> 24) & 0x80)
//	vals[i] = float(b & 0x80000000 | (sub ? bits((float(a) + magic) - magic)
//	                                      : code << shift + valBias))  // if vals is not empty
//
// The decoded value is computed, not looked up: a normal code shifted back into place is
// the float32 of its value once the exponent is rebiased, and on the subnormal grid the
// rounded sum minus magic is the value itself.

// VPSHUFB mask: byte 0 of each dword to the low 4 bytes of its 128-bit lane.
DATA packmask<>+0(SB)/8, $0x808080800c080400
DATA packmask<>+8(SB)/8, $0x8080808080808080
DATA packmask<>+16(SB)/8, $0x808080800c080400
DATA packmask<>+24(SB)/8, $0x8080808080808080
GLOBL packmask<>(SB), RODATA|NOPTR, $32

#define DST DI
#define VALS DX
#define SRC SI
#define N CX
#define I AX

#define AMAX Y15    // running max of |x| bits
#define SCALE Y14
#define ABSMASK Y13 // 0x7FFFFFFF
#define ONE Y12
#define K Y11
#define SHIFT X10   // shift count, low 64 bits
#define MINNORM Y9
#define MAXCODE Y8
#define MAGIC Y7    // magic as float and as bits
#define VALBIAS Y6

// QUANT8 leaves, for src[I:I+8]: Y0 the subnormal mask, Y2 the sign bits, Y3 the normal
// code, Y4 = float(a) + magic.
#define QUANT8 \
	VMOVUPS   (SRC)(I*4), Y0; \
	VPAND     ABSMASK, Y0, Y1; \
	VPMAXUD   Y1, AMAX, AMAX; \
	VMULPS    SCALE, Y0, Y0; \
	QUANTSCALED

// QUANTSCALED is QUANT8 from Y0 = src[I:I+8]·scale on.
#define QUANTSCALED \
	VPAND     ABSMASK, Y0, Y1; \
	VPANDN    Y0, ABSMASK, Y2; \
	VPSRLD    SHIFT, Y1, Y3; \
	VPAND     ONE, Y3, Y3; \
	VPADDD    Y1, Y3, Y3; \
	VPADDD    K, Y3, Y3; \
	VPSRLD    SHIFT, Y3, Y3; \
	VPMINUD   MAXCODE, Y3, Y3; \
	VADDPS    MAGIC, Y1, Y4; \
	VPCMPGTD  Y1, MINNORM, Y0

// STORECODES packs the 8 codes with their signs into dst[I:I+8].
#define STORECODES \
	VPSUBD       MAGIC, Y4, Y5; \
	VPBLENDVB    Y0, Y5, Y3, Y5; \
	VPSRLD       $24, Y2, Y1; \
	VPOR         Y1, Y5, Y5; \
	VPSHUFB      packmask<>(SB), Y5, Y5; \
	VEXTRACTI128 $1, Y5, X1; \
	VPUNPCKLDQ   X1, X5, X5; \
	VMOVQ        X5, (DST)(I*1)

// STOREVALS writes the 8 decoded values into vals[I:I+8].
#define STOREVALS \
	VPSLLD    SHIFT, Y3, Y3; \
	VPADDD    VALBIAS, Y3, Y3; \
	VSUBPS    MAGIC, Y4, Y4; \
	VPBLENDVB Y0, Y4, Y3, Y3; \
	VPOR      Y2, Y3, Y3; \
	VMOVUPS   Y3, (VALS)(I*4)

// func encodeSatAVX2(dst []uint8, vals []float32, src []float32, scale float32, c *encConsts) (amax uint32)
TEXT ·encodeSatAVX2(SB), NOSPLIT, $0-92
	MOVQ dst_base+0(FP), DST
	MOVQ vals_base+24(FP), VALS
	MOVQ vals_len+32(FP), R9
	MOVQ src_base+48(FP), SRC
	MOVQ src_len+56(FP), N
	MOVQ c+80(FP), R8

	VBROADCASTSS scale+72(FP), SCALE
	VPCMPEQD     ABSMASK, ABSMASK, ABSMASK
	VPSRLD       $31, ABSMASK, ONE
	VPSRLD       $1, ABSMASK, ABSMASK
	VPBROADCASTD 0(R8), K
	VMOVD        4(R8), SHIFT
	VPBROADCASTD 8(R8), MINNORM
	VPBROADCASTD 12(R8), MAXCODE
	VPBROADCASTD 16(R8), MAGIC
	VPBROADCASTD 20(R8), VALBIAS
	VPXOR        AMAX, AMAX, AMAX
	XORQ         I, I
	TESTQ        N, N
	JEQ          done
	TESTQ        R9, R9
	JNE          both

codes:
	QUANT8
	STORECODES
	ADDQ $8, I
	CMPQ I, N
	JLT  codes
	JMP  done

both:
	QUANT8
	STORECODES
	STOREVALS
	ADDQ $8, I
	CMPQ I, N
	JLT  both

done:
	// horizontal max of the 8 lanes
	VEXTRACTI128 $1, AMAX, X0
	VPMAXUD      X0, X15, X15
	VPSHUFD      $0x4E, X15, X0
	VPMAXUD      X0, X15, X15
	VPSHUFD      $0xB1, X15, X0
	VPMAXUD      X0, X15, X15
	VMOVD        X15, AX
	MOVL         AX, amax+88(FP)
	VZEROUPPER
	RET

// func decodeAVX2(dst []float32, src []uint8, scaleInv float32, tab *[256]float32)
//
//	dst[i] = tab[src[i]] * scaleInv, 8 at a time (a gather from the 1 KiB table, in L1).
TEXT ·decodeAVX2(SB), NOSPLIT, $0-64
	MOVQ         dst_base+0(FP), DI
	MOVQ         src_base+24(FP), SI
	MOVQ         src_len+32(FP), CX
	MOVQ         tab+56(FP), R8
	VBROADCASTSS scaleInv+48(FP), Y15
	XORQ         AX, AX
	TESTQ        CX, CX
	JEQ          decdone

decloop:
	VPMOVZXBD  (SI)(AX*1), Y1
	VPCMPEQD   Y2, Y2, Y2           // gather mask: all lanes (the gather clears it)
	VPGATHERDD Y2, (R8)(Y1*4), Y0
	VMULPS     Y15, Y0, Y0
	VMOVUPS    Y0, (DI)(AX*4)
	ADDQ       $8, AX
	CMPQ       AX, CX
	JLT        decloop

decdone:
	VZEROUPPER
	RET

// CONSTS loads encConsts at R8 into the constant registers, and ONE and ABSMASK.
#define CONSTS \
	VPCMPEQD     ABSMASK, ABSMASK, ABSMASK; \
	VPSRLD       $31, ABSMASK, ONE; \
	VPSRLD       $1, ABSMASK, ABSMASK; \
	VPBROADCASTD 0(R8), K; \
	VMOVD        4(R8), SHIFT; \
	VPBROADCASTD 8(R8), MINNORM; \
	VPBROADCASTD 12(R8), MAXCODE; \
	VPBROADCASTD 16(R8), MAGIC; \
	VPBROADCASTD 20(R8), VALBIAS

// func encodeVecAVX2(dst []uint8, vals []float32, src []float32, scale []float32, k []float32, c *encConsts)
//
// The loop of a column tiling, 8 floats per step, each element with its own scale and
// scale-back: dst[i] = Encode(src[i]·scale[i], SatFinite) and vals[i] = Decode(dst[i])·k[i],
// as encodeSatAVX2 computes them (no amax, no NaN fix-up). len(src) is a multiple of 8 and
// every other slice at least as long.
TEXT ·encodeVecAVX2(SB), NOSPLIT, $0-128
	MOVQ dst_base+0(FP), DST
	MOVQ vals_base+24(FP), VALS
	MOVQ src_base+48(FP), SRC
	MOVQ src_len+56(FP), N
	MOVQ scale_base+72(FP), R10
	MOVQ k_base+96(FP), R11
	MOVQ c+120(FP), R8
	CONSTS
	XORQ  I, I
	TESTQ N, N
	JEQ   vecdone

vecloop:
	VMOVUPS (SRC)(I*4), Y0
	VMULPS  (R10)(I*4), Y0, Y0
	QUANTSCALED
	STORECODES
	VPSLLD    SHIFT, Y3, Y3
	VPADDD    VALBIAS, Y3, Y3
	VSUBPS    MAGIC, Y4, Y4
	VPBLENDVB Y0, Y4, Y3, Y3
	VPOR      Y2, Y3, Y3
	VMULPS    (R11)(I*4), Y3, Y3
	VMOVUPS   Y3, (VALS)(I*4)
	ADDQ      $8, I
	CMPQ      I, N
	JLT       vecloop

vecdone:
	VZEROUPPER
	RET

// func encodeKAVX2(dst []uint8, vals []float32, src []float32, scale, k float32, c *encConsts)
//
// encodeVecAVX2 with one scale and one scale-back for all elements (a 1×T tile).
TEXT ·encodeKAVX2(SB), NOSPLIT, $0-88
	MOVQ         dst_base+0(FP), DST
	MOVQ         vals_base+24(FP), VALS
	MOVQ         src_base+48(FP), SRC
	MOVQ         src_len+56(FP), N
	MOVQ         c+80(FP), R8
	VBROADCASTSS scale+72(FP), SCALE
	VBROADCASTSS k+76(FP), Y15
	CONSTS
	XORQ         I, I
	TESTQ        N, N
	JEQ          kdone

kloop:
	VMOVUPS (SRC)(I*4), Y0
	VMULPS  SCALE, Y0, Y0
	QUANTSCALED
	STORECODES
	VPSLLD    SHIFT, Y3, Y3
	VPADDD    VALBIAS, Y3, Y3
	VSUBPS    MAGIC, Y4, Y4
	VPBLENDVB Y0, Y4, Y3, Y3
	VPOR      Y2, Y3, Y3
	VMULPS    Y15, Y3, Y3
	VMOVUPS   Y3, (VALS)(I*4)
	ADDQ      $8, I
	CMPQ      I, N
	JLT       kloop

kdone:
	VZEROUPPER
	RET

// func amaxAVX2(src []float32) uint32
//
// max over i of bits(src[i]) & 0x7FFFFFFF; len(src) is a multiple of 8.
TEXT ·amaxAVX2(SB), NOSPLIT, $0-28
	MOVQ     src_base+0(FP), SI
	MOVQ     src_len+8(FP), CX
	VPCMPEQD Y13, Y13, Y13
	VPSRLD   $1, Y13, Y13
	VPXOR    Y15, Y15, Y15
	XORQ     AX, AX
	TESTQ    CX, CX
	JEQ      amdone

amloop:
	VPAND   (SI)(AX*4), Y13, Y0
	VPMAXUD Y0, Y15, Y15
	ADDQ    $8, AX
	CMPQ    AX, CX
	JLT     amloop

amdone:
	VEXTRACTI128 $1, Y15, X0
	VPMAXUD      X0, X15, X15
	VPSHUFD      $0x4E, X15, X0
	VPMAXUD      X0, X15, X15
	VPSHUFD      $0xB1, X15, X0
	VPMAXUD      X0, X15, X15
	VMOVD        X15, AX
	MOVL         AX, ret+24(FP)
	VZEROUPPER
	RET

// func amaxColsAVX2(a []uint32, src []float32)
//
// a[j] = max(a[j], bits(src[j]) & 0x7FFFFFFF): a band's column amaxes, one row at a
// time; len(src) is a multiple of 8 and len(a) at least as long.
TEXT ·amaxColsAVX2(SB), NOSPLIT, $0-48
	MOVQ     a_base+0(FP), DI
	MOVQ     src_base+24(FP), SI
	MOVQ     src_len+32(FP), CX
	VPCMPEQD Y13, Y13, Y13
	VPSRLD   $1, Y13, Y13
	XORQ     AX, AX
	TESTQ    CX, CX
	JEQ      acdone

acloop:
	VPAND   (SI)(AX*4), Y13, Y0
	VPMAXUD (DI)(AX*4), Y0, Y0
	VMOVDQU Y0, (DI)(AX*4)
	ADDQ    $8, AX
	CMPQ    AX, CX
	JLT     acloop

acdone:
	VZEROUPPER
	RET
