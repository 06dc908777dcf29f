//go:build amd64 && !purego

#include "textflag.h"

// The AVX-512 twins of encode_amd64.s's loops, 16 floats per step, computing the same bits
// the same way (see encodeSatAVX2 there). What AVX-512 makes shorter: the subnormal lanes
// are a mask register, so their code and value are merged in by masked instructions
// instead of blends; VPTERNLOGD puts the sign in with one instruction; VPMOVDB stores the
// 16 codes; the shifts take their count from a vector (VPSRLVD: one uop, where the form
// with an xmm count takes two). Every instruction here is in AVX-512 Foundation.

#define DST DI
#define VALS DX
#define SRC SI
#define N CX
#define I AX

#define AMAX Z15    // running max of |x| bits
#define SCALE Z14
#define ABSMASK Z13 // 0x7FFFFFFF
#define ONE Z12
#define K Z11
#define SHIFT Z10   // shift count, in every lane
#define MINNORM Z9
#define MAXCODE Z8
#define MAGIC Z7    // magic as float and as bits
#define VALBIAS Z6
#define SIGNBYTE Z16 // 0x80
#define KSCALE Z17  // encodeK's scale-back

// CONSTS loads encConsts at R8 into the constant registers, and ONE, ABSMASK and SIGNBYTE.
#define CONSTS \
	VPTERNLOGD   $0xFF, ABSMASK, ABSMASK, ABSMASK; \
	VPSRLD       $31, ABSMASK, ONE; \
	VPSLLD       $7, ONE, SIGNBYTE; \
	VPSRLD       $1, ABSMASK, ABSMASK; \
	VPBROADCASTD 0(R8), K; \
	VPBROADCASTD 4(R8), SHIFT; \
	VPBROADCASTD 8(R8), MINNORM; \
	VPBROADCASTD 12(R8), MAXCODE; \
	VPBROADCASTD 16(R8), MAGIC; \
	VPBROADCASTD 20(R8), VALBIAS

// QUANT16 leaves, for src[I:I+16]: Z0 = src·scale (b), Z3 the code without its sign, Z4 =
// float(a) + magic and K1 the subnormal lanes; AMAX takes in |src|.
#define QUANT16 \
	VMOVUPS (SRC)(I*4), Z0; \
	VPANDD  ABSMASK, Z0, Z1; \
	VPMAXUD Z1, AMAX, AMAX; \
	VMULPS  SCALE, Z0, Z0; \
	QUANTSCALED

// QUANTSCALED is QUANT16 from Z0 = src[I:I+16]·scale on.
#define QUANTSCALED \
	VPANDD   ABSMASK, Z0, Z1; \
	VPSRLVD  SHIFT, Z1, Z3; \
	VPANDD   ONE, Z3, Z3; \
	VPADDD   Z1, Z3, Z3; \
	VPADDD   K, Z3, Z3; \
	VPSRLVD  SHIFT, Z3, Z3; \
	VPMINUD  MAXCODE, Z3, Z3; \
	VADDPS   MAGIC, Z1, Z4; \
	VPCMPGTD Z1, MINNORM, K1; \
	VPSUBD   MAGIC, Z4, K1, Z3

// STORECODES writes the 16 codes with their signs, code | (b >> 24) & 0x80, to dst[I:I+16].
#define STORECODES \
	VPSRLD     $24, Z0, Z5; \
	VPTERNLOGD $0xEC, SIGNBYTE, Z3, Z5; \
	VPMOVDB    Z5, (DST)(I*1)

// DECODED turns Z3 into the 16 decoded values: a normal code shifted back and rebiased, a
// subnormal one's (float(a) + magic) - magic, each with b's sign.
#define DECODED \
	VPSLLVD    SHIFT, Z3, Z3; \
	VPADDD     VALBIAS, Z3, Z3; \
	VSUBPS     MAGIC, Z4, K1, Z3; \
	VPTERNLOGD $0xF4, ABSMASK, Z0, Z3

// ENCODE16 writes the codes of src[I:I+16]·SCALE to dst[I:I+16], leaving QUANTSCALED's
// registers for DECODED.
#define ENCODE16 \
	VMOVUPS (SRC)(I*4), Z0; \
	VMULPS  SCALE, Z0, Z0; \
	QUANTSCALED; \
	STORECODES

// HMAX16 stores the largest of AMAX's 16 lanes at ret.
#define HMAX16(ret) \
	VEXTRACTI64X4 $1, AMAX, Y0; \
	VPMAXUD       Y0, Y15, Y15; \
	VEXTRACTI128  $1, Y15, X0; \
	VPMAXUD       X0, X15, X15; \
	VPSHUFD       $0x4E, X15, X0; \
	VPMAXUD       X0, X15, X15; \
	VPSHUFD       $0xB1, X15, X0; \
	VPMAXUD       X0, X15, X15; \
	VMOVD         X15, ret

// TILEAMAX leaves in every lane of Z0 the largest |x| bits of the 128 floats at SRC+4·I, a
// tree of maxima over Z0..Z3 (the tile's eight vectors are independent loads).
#define TILEAMAX \
	VPANDD     (SRC)(I*4), ABSMASK, Z0; \
	VPANDD     64(SRC)(I*4), ABSMASK, Z1; \
	VPANDD     128(SRC)(I*4), ABSMASK, Z2; \
	VPANDD     192(SRC)(I*4), ABSMASK, Z3; \
	VPMAXUD    Z1, Z0, Z0; \
	VPMAXUD    Z3, Z2, Z2; \
	VPANDD     256(SRC)(I*4), ABSMASK, Z1; \
	VPANDD     320(SRC)(I*4), ABSMASK, Z3; \
	VPMAXUD    Z1, Z0, Z0; \
	VPMAXUD    Z3, Z2, Z2; \
	VPANDD     384(SRC)(I*4), ABSMASK, Z1; \
	VPANDD     448(SRC)(I*4), ABSMASK, Z3; \
	VPMAXUD    Z1, Z0, Z0; \
	VPMAXUD    Z3, Z2, Z2; \
	VPMAXUD    Z2, Z0, Z0; \
	VSHUFI32X4 $0x4E, Z0, Z0, Z1; \
	VPMAXUD    Z1, Z0, Z0; \
	VSHUFI32X4 $0xB1, Z0, Z0, Z1; \
	VPMAXUD    Z1, Z0, Z0; \
	VPSHUFD    $0x4E, Z0, Z1; \
	VPMAXUD    Z1, Z0, Z0; \
	VPSHUFD    $0xB1, Z0, Z1; \
	VPMAXUD    Z1, Z0, Z0

// func encodeSatAVX512(dst []uint8, vals []float32, src []float32, scale float32, c *encConsts) (amax uint32)
//
// encodeSatAVX2 with len(src) a multiple of 16.
TEXT ·encodeSatAVX512(SB), NOSPLIT, $0-92
	MOVQ dst_base+0(FP), DST
	MOVQ vals_base+24(FP), VALS
	MOVQ vals_len+32(FP), R9
	MOVQ src_base+48(FP), SRC
	MOVQ src_len+56(FP), N
	MOVQ c+80(FP), R8

	VBROADCASTSS scale+72(FP), SCALE
	CONSTS
	VPXORD       AMAX, AMAX, AMAX
	XORQ         I, I
	TESTQ        N, N
	JEQ          done
	TESTQ        R9, R9
	JNE          both

codes:
	QUANT16
	STORECODES
	ADDQ $16, I
	CMPQ I, N
	JLT  codes
	JMP  done

both:
	QUANT16
	STORECODES
	DECODED
	VMOVUPS Z3, (VALS)(I*4)
	ADDQ    $16, I
	CMPQ    I, N
	JLT     both

done:
	HMAX16(AX)
	MOVL AX, amax+88(FP)
	VZEROUPPER
	RET

// func encodeVecAVX512(dst []uint8, vals []float32, src []float32, scale []float32, k []float32, c *encConsts)
//
// encodeVecAVX2 with len(src) a multiple of 16.
TEXT ·encodeVecAVX512(SB), NOSPLIT, $0-128
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
	VMOVUPS (SRC)(I*4), Z0
	VMULPS  (R10)(I*4), Z0, Z0
	QUANTSCALED
	STORECODES
	DECODED
	VMULPS  (R11)(I*4), Z3, Z3
	VMOVUPS Z3, (VALS)(I*4)
	ADDQ    $16, I
	CMPQ    I, N
	JLT     vecloop

vecdone:
	VZEROUPPER
	RET

// func encodeKAVX512(dst []uint8, vals []float32, src []float32, scale, k float32, c *encConsts)
//
// encodeKAVX2 with len(src) a multiple of 16.
TEXT ·encodeKAVX512(SB), NOSPLIT, $0-88
	MOVQ         dst_base+0(FP), DST
	MOVQ         vals_base+24(FP), VALS
	MOVQ         src_base+48(FP), SRC
	MOVQ         src_len+56(FP), N
	MOVQ         c+80(FP), R8
	VBROADCASTSS scale+72(FP), SCALE
	VBROADCASTSS k+76(FP), KSCALE
	CONSTS
	XORQ         I, I
	TESTQ        N, N
	JEQ          kdone

kloop:
	ENCODE16
	DECODED
	VMULPS  KSCALE, Z3, Z3
	VMOVUPS Z3, (VALS)(I*4)
	ADDQ    $16, I
	CMPQ    I, N
	JLT     kloop

kdone:
	VZEROUPPER
	RET

// func encodeTilesAVX512(dst []uint8, inv []float32, src []float32, fmax float32, c *encConsts) (amax uint32)
//
// tileQuant's loop over whole 1×128 tiles one after another, len(src) a multiple of 128:
// per tile its amax (TILEAMAX), its scale by kernels.FP8Scale's rule with margin 0 (fmax/amax
// as a float32 division, clamped to [2^-126, 2^126]; 1 for an all-zero or non-finite
// amax), 1/scale into inv[t], and the codes of src·scale. Like encodeSatAVX2 it leaves
// NaN's code to the caller. One call for many tiles instead of an amax, a scale and an
// encodeSat call per tile of 128 values.
TEXT ·encodeTilesAVX512(SB), NOSPLIT, $0-92
	MOVQ   dst_base+0(FP), DST
	MOVQ   inv_base+24(FP), R13
	MOVQ   src_base+48(FP), SRC
	MOVQ   src_len+56(FP), N
	MOVQ   c+80(FP), R8
	CONSTS
	VMOVSS fmax+72(FP), X18
	MOVL   $0x7E800000, R10      // 2^126
	VMOVD  R10, X20
	MOVL   $0x3F800000, R10      // 1
	VMOVD  R10, X21
	VPXORD AMAX, AMAX, AMAX
	XORQ   I, I
	TESTQ  N, N
	JEQ    tdone

tile:
	TILEAMAX
	VPMAXUD Z0, AMAX, AMAX
	VMOVD   X0, R10
	SUBL    $1, R10
	CMPL    R10, $0x7F7FFFFE     // amax - 1 above the largest finite float - 1: zero, Inf or NaN
	JHI     unit
	VDIVSS  X0, X18, X1
	VMINSS  X20, X1, X1          // fmax / MaxFloat32 is above 2^-126: no lower clamp to apply
	JMP     scaled

unit:
	VMOVSS X21, X21, X1

scaled:
	VDIVSS       X1, X21, X2     // 1/scale
	VMOVSS       X2, (R13)
	ADDQ         $4, R13
	VBROADCASTSS X1, SCALE
	LEAQ         128(I), R12

tcodes:
	ENCODE16
	ADDQ $16, I
	CMPQ I, R12
	JLT  tcodes
	CMPQ I, N
	JLT  tile

tdone:
	HMAX16(AX)
	MOVL AX, amax+88(FP)
	VZEROUPPER
	RET

// func amaxAVX512(src []float32) uint32
//
// amaxAVX2 with len(src) a multiple of 16.
TEXT ·amaxAVX512(SB), NOSPLIT, $0-28
	MOVQ       src_base+0(FP), SI
	MOVQ       src_len+8(FP), CX
	VPTERNLOGD $0xFF, ABSMASK, ABSMASK, ABSMASK
	VPSRLD     $1, ABSMASK, ABSMASK
	VPXORD     AMAX, AMAX, AMAX
	XORQ       AX, AX
	TESTQ      CX, CX
	JEQ        amdone

amloop:
	VPANDD  (SI)(AX*4), ABSMASK, Z0
	VPMAXUD Z0, AMAX, AMAX
	ADDQ    $16, AX
	CMPQ    AX, CX
	JLT     amloop

amdone:
	HMAX16(AX)
	MOVL AX, ret+24(FP)
	VZEROUPPER
	RET

// func amaxColsAVX512(a []uint32, src []float32)
//
// amaxColsAVX2 with len(src) a multiple of 16.
TEXT ·amaxColsAVX512(SB), NOSPLIT, $0-48
	MOVQ       a_base+0(FP), DI
	MOVQ       src_base+24(FP), SI
	MOVQ       src_len+32(FP), CX
	VPTERNLOGD $0xFF, ABSMASK, ABSMASK, ABSMASK
	VPSRLD     $1, ABSMASK, ABSMASK
	XORQ       AX, AX
	TESTQ      CX, CX
	JEQ        acdone

acloop:
	VPANDD    (SI)(AX*4), ABSMASK, Z0
	VPMAXUD   (DI)(AX*4), Z0, Z0
	VMOVDQU32 Z0, (DI)(AX*4)
	ADDQ      $16, AX
	CMPQ      AX, CX
	JLT       acloop

acdone:
	VZEROUPPER
	RET

// DECCONSTS loads the decConsts at R8: Z16 = shift, Z17 = pow, Z18 = off, Z19 = lim,
// Z20 = fix, and Z26 = a float's sign bit.
#define DECCONSTS \
	VPBROADCASTD 0(R8), Z16; \
	VPBROADCASTD 4(R8), Z17; \
	VPBROADCASTD 8(R8), Z18; \
	VPBROADCASTD 12(R8), Z19; \
	VMOVUPS      16(R8), Z20; \
	VPTERNLOGD   $0xFF, Z26, Z26, Z26; \
	VPSLLD       $31, Z26, Z26

// DECODE16 writes decode[c]·Z15 to DI[AX:AX+16] for the 16 codes c at SI[AX:AX+16],
// computed rather than looked up (see decConsts):
//
//	m = c << 25                           // the 7 magnitude bits on top, the sign gone
//	v = m + off >= lim ? float(m >> shift) * pow   // a normal code: exact
//	                   : fix[c & 15]               // zero, subnormal, Inf or NaN
//	dst[i] = (v | c<<24 & 0x80000000) * scale
//
// The codes are sign-extended, so that bit 31 of each lane is the code's sign. The
// multiply by pow is masked to the normal codes' lanes: a subnormal input takes a
// microcode assist on Sapphire Rapids (BenchmarkDecodeL1's all-subnormal case measures
// it), a masked-off lane none. The product with the scale is tab[c]·scale,
// one rounding of the same operands in the same order. Nine instructions and the store
// instead of the four table permutes' seventeen.
#define DECODE16 \
	VPMOVSXBD  (SI)(AX*1), Z1; \
	VPSLLD     $25, Z1, Z2; \
	VPADDD     Z18, Z2, Z3; \
	VPCMPUD    $5, Z19, Z3, K1; \
	VPSRLVD    Z16, Z2, Z2; \
	VPERMPS    Z20, Z1, Z3; \
	VMULPS     Z17, Z2, K1, Z3; \
	VPTERNLOGD $0xF8, Z26, Z1, Z3; \
	VMULPS     Z15, Z3, Z3; \
	VMOVUPS    Z3, (DI)(AX*4)

// func decodeAVX512(dst []float32, src []uint8, scaleInv float32, c *decConsts)
//
// decodeAVX2 with len(src) a multiple of 16, by arithmetic instead of a gather (DECODE16:
// TestDecodeBulkEveryCode checks every code bit for bit, NaN codes included).
TEXT ·decodeAVX512(SB), NOSPLIT, $0-64
	MOVQ         dst_base+0(FP), DI
	MOVQ         src_base+24(FP), SI
	MOVQ         src_len+32(FP), CX
	MOVQ         c+56(FP), R8
	VBROADCASTSS scaleInv+48(FP), Z15
	DECCONSTS
	XORQ         AX, AX
	TESTQ        CX, CX
	JEQ          decdone

decloop:
	DECODE16
	ADDQ $16, AX
	CMPQ AX, CX
	JLT  decloop

decdone:
	VZEROUPPER
	RET

// func decodeRowsAVX512(dst []float32, ldd int, src []uint8, lds, rows, cols int, scaleInv float32, c *decConsts)
//
// decodeAVX512 on rows rows of cols codes (cols a multiple of 16, rows ≥ 1), row r from
// src[r*lds:] to dst[r*ldd:]: a GEMM panel in one call, the constants loaded once.
TEXT ·decodeRowsAVX512(SB), NOSPLIT, $0-96
	MOVQ         dst_base+0(FP), DI
	MOVQ         ldd+24(FP), R10
	SHLQ         $2, R10
	MOVQ         src_base+32(FP), SI
	MOVQ         lds+56(FP), R11
	MOVQ         rows+64(FP), R9
	MOVQ         cols+72(FP), CX
	MOVQ         c+88(FP), R8
	VBROADCASTSS scaleInv+80(FP), Z15
	DECCONSTS

drrow:
	XORQ AX, AX

drloop:
	DECODE16
	ADDQ $16, AX
	CMPQ AX, CX
	JLT  drloop
	ADDQ R10, DI
	ADDQ R11, SI
	DECQ R9
	JNZ  drrow
	VZEROUPPER
	RET

// func decodeTilesAVX512(dst []float32, codes []uint8, inv []float32, mul float32, c *decConsts)
//
// tileDecode's loop over whole 1×128 tiles one after another, len(codes) a multiple of
// 128: tile t's codes decoded and times inv[t]·mul, the constants staying in registers
// from tile to tile.
TEXT ·decodeTilesAVX512(SB), NOSPLIT, $0-88
	MOVQ   dst_base+0(FP), DI
	MOVQ   codes_base+24(FP), SI
	MOVQ   codes_len+32(FP), CX
	MOVQ   inv_base+48(FP), R9
	MOVQ   c+80(FP), R8
	VMOVSS mul+72(FP), X14
	DECCONSTS
	XORQ   AX, AX
	TESTQ  CX, CX
	JEQ    dtdone

dtile:
	VMULSS       (R9), X14, X15
	VBROADCASTSS X15, Z15
	ADDQ         $4, R9
	LEAQ         128(AX), R12

dtloop:
	DECODE16
	ADDQ $16, AX
	CMPQ AX, R12
	JLT  dtloop
	CMPQ AX, CX
	JLT  dtile

dtdone:
	VZEROUPPER
	RET
