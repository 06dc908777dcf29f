#!/usr/bin/env python3
"""Holds herd's FP8 emulation against an NVIDIA GPU (Hopper: H100/H200).

usage: fp8_check.py DIR      (DIR written by `go run ./tools/fp8dump DIR`)

1. Codecs: all 65536 bfloat16 values converted to E4M3 and E5M2 by the GPU's own
   conversion (__nv_cvt_float_to_fp8, what Transformer Engine's cast kernels use; DIR/
   gpu_codes.u8 from bench/gpu/fp8_cvt.cu) with __NV_SATFINITE and __NV_NOSAT, and by
   PyTorch's casts on the GPU, compared code for code with herd's.
2. GEMMs: the operands herd quantized (same codes, same scales) multiplied by cuBLASLt's
   FP8 tensor-core GEMM (torch._scaled_mm), with and without Hopper's fast accumulation,
   against herd's emulated outputs and against the exact float64 product of the decoded
   operands. Prints one line per comparison.

Without a GPU it checks herd's outputs against the exact product only (numpy).
"""
import json
import os
import sys

import numpy as np


def decode_table(exp_bits, man_bits, bias, ieee):
    """Exact float64 value of every code of an FP8 format (NaN for NaN codes, +-inf for E5M2's)."""
    t = np.empty(256)
    for c in range(256):
        s, e, m = c >> 7, (c >> man_bits) & ((1 << exp_bits) - 1), c & ((1 << man_bits) - 1)
        if ieee and e == (1 << exp_bits) - 1:
            v = np.inf if m == 0 else np.nan
        elif not ieee and e == (1 << exp_bits) - 1 and m == (1 << man_bits) - 1:
            v = np.nan
        elif e == 0:
            v = m / (1 << man_bits) * 2.0 ** (1 - bias)
        else:
            v = (1 + m / (1 << man_bits)) * 2.0 ** (e - bias)
        t[c] = -v if s else v
    return t


E4M3, E5M2 = decode_table(4, 3, 7, False), decode_table(5, 2, 15, True)


def rel(a, b):
    """Largest |a-b| over the largest |b|, and the relative Frobenius error."""
    d = np.abs(a - b)
    return d.max() / np.abs(b).max(), np.linalg.norm(a - b) / np.linalg.norm(b)


def load(d):
    meta = json.load(open(f"{d}/gemm.json"))
    n, k, o = meta["n"], meta["in"], meta["out"]
    u8 = lambda name, shape: np.fromfile(f"{d}/{name}.u8", np.uint8).reshape(shape)
    f32 = lambda name, shape: np.fromfile(f"{d}/{name}.f32", "<f4").reshape(shape)
    ops = dict(x=u8("x", (n, k)), w=u8("w", (o, k)), dy=u8("dy", (n, o)))
    herd = dict(y=f32("y", (n, o)), dx=f32("dx", (n, k)), dw=f32("dw", (o, k)))
    return meta, ops, herd


def exact(meta, ops):
    x = E4M3[ops["x"]] * meta["x_scale_inv"]
    w = E4M3[ops["w"]] * meta["w_scale_inv"]
    dy = E5M2[ops["dy"]] * meta["dy_scale_inv"]
    return dict(y=x @ w.T, dx=dy @ w, dw=dy.T @ x)


def gpu_codecs(d, torch):
    """Mismatch counts of the GPU's conversions against herd's codes, per format and mode."""
    bits = (np.arange(1 << 16, dtype=np.uint32) << 16).view(np.float32)
    herd = np.fromfile(f"{d}/codes.u8", np.uint8).reshape(4, 1 << 16)  # E4M3 sat, E4M3 nosat, E5M2 sat, E5M2 nosat
    names = ["E4M3 satfinite", "E4M3 nosat", "E5M2 satfinite", "E5M2 nosat"]
    nan = lambda c, fmt: (c & 0x7F) == 0x7F if fmt == 0 else ((c & 0x7C) == 0x7C) & ((c & 3) != 0)
    def report(who, got):
        for i, name in enumerate(names):
            h, g = herd[i], got[i]
            # NaN payloads are not specified: count any NaN code as matching any other.
            same = (h == g) | (nan(h, i // 2) & nan(g, i // 2))
            bad = np.flatnonzero(~same)
            ex = ", ".join(f"{bits[j]!r}: herd {h[j]:#04x} gpu {g[j]:#04x}" for j in bad[:3])
            print(f"codec {who:<28} {name:<15} {len(bad):6d} of 65536 differ" + (f" ({ex})" if ex else ""))
    cvt = f"{d}/gpu_codes.u8"  # written by fp8_cvt (bench/gpu/fp8_cvt.cu), when it ran
    if os.path.exists(cvt):
        report("__nv_cvt_float_to_fp8", np.fromfile(cvt, np.uint8).reshape(4, 1 << 16))
    else:
        print(f"codec __nv_cvt_float_to_fp8: not run ({cvt} missing)")
    x = torch.from_numpy(bits).cuda()
    got = []
    for dt, mx in ((torch.float8_e4m3fn, 448.0), (torch.float8_e5m2, 57344.0)):
        got.append(x.clamp(-mx, mx).to(dt).view(torch.uint8).cpu().numpy())  # NaN passes through clamp
        got.append(x.to(dt).view(torch.uint8).cpu().numpy())
    report("torch .to() (clamp for sat)", np.stack(got))


def gpu_gemms(meta, ops, torch):
    """The three GEMMs through cuBLASLt's FP8 path, fast accumulation off and on."""
    cu = lambda a, dt: torch.from_numpy(np.ascontiguousarray(a)).cuda().view(dt)
    e4, e5 = torch.float8_e4m3fn, torch.float8_e5m2
    s = lambda name: torch.tensor(meta[name + "_scale_inv"], dtype=torch.float32, device="cuda")
    x, w, dy = cu(ops["x"], e4), cu(ops["w"], e4), cu(ops["dy"], e5)
    colmajor = lambda t: t.t().contiguous().t()  # the second operand must be column-major
    out = {}
    for fast in (False, True):
        mm = lambda a, b, sa, sb: torch._scaled_mm(a, colmajor(b), scale_a=sa, scale_b=sb,
                                                   out_dtype=torch.float32, use_fast_accum=fast)
        # y = x·wᵀ; dx = dy·w; dw = dyᵀ·x (cuBLASLt takes no E5M2 x E5M2, but E5M2 x E4M3 is fine).
        out[fast] = dict(
            y=mm(x, w.t(), s("x"), s("w")),
            dx=mm(dy, w, s("dy"), s("w")),
            dw=mm(dy.t().contiguous(), x, s("dy"), s("x")),
        )
        out[fast] = {k: v.double().cpu().numpy() for k, v in out[fast].items()}
    return out


def main():
    d = sys.argv[1]
    meta, ops, herd = load(d)
    ref = exact(meta, ops)
    print(f"FP8 linear layer n={meta['n']} in={meta['in']} out={meta['out']}, current scaling; "
          "errors: max |a-b| / max |exact|, relative Frobenius")
    for k in ("y", "dx", "dw"):
        print("gemm %-3s herd emulation vs exact          max %.2e  frob %.2e" % ((k,) + rel(herd[k], ref[k])))
    try:
        import torch
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device")
    except Exception as e:  # noqa: BLE001
        print(f"GPU checks not run: {e}")
        return
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    gpu_codecs(d, torch)
    for fast, res in gpu_gemms(meta, ops, torch).items():
        acc = "fast accum" if fast else "split accum"
        for k in ("y", "dx", "dw"):
            print("gemm %-3s cuBLASLt %-11s vs exact      max %.2e  frob %.2e" % ((k, acc) + rel(res[k], ref[k])))
            print("gemm %-3s cuBLASLt %-11s vs herd       max %.2e  frob %.2e" % ((k, acc) + rel(res[k], herd[k])))


if __name__ == "__main__":
    main()
