#!/usr/bin/env python3
"""PyTorch CPU reference for herd's training-step benchmark (bench/train_step.sh).

One step = forward, backward, global-norm clipping and AdamW on the dense config
(herd's examples/dense-bench.yaml): vocab 256, d_model 256, 4 layers, 4 heads
(4 kv heads), SwiGLU hidden 768, seq 256, batch 8, fp32, pre-norm RMSNorm, RoPE, causal
attention, untied LM head, cross-entropy. The same computation herd's step does, written
plainly in PyTorch (1.13 has no fused attention).

usage: train_step.py [STEPS] [THREADS] [SEQ] [D_MODEL]      (defaults 10, 2, 256, 256)
SEQ and D_MODEL change the sequence length and the width (SwiGLU hidden 3·D_MODEL, still
4 heads), as herd's BenchmarkTrainStepShapes does.
Prints the median step time, tokens/s and CPU time of all threads per step over STEPS
steps after 2 warm-up steps, and the process's peak resident memory. Set OPENBLAS_NUM_THREADS to THREADS (train_step.sh does).
"""
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, LAYERS, HEADS, BATCH = 256, 4, 4, 8
SEQ = int(sys.argv[3]) if len(sys.argv) > 3 else 256
D = int(sys.argv[4]) if len(sys.argv) > 4 else 256
HIDDEN = 3 * D
HEAD_DIM = D // HEADS
ROPE_THETA, EPS = 500000.0, 1e-5


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.g = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * self.g


def rope(x, cos, sin):
    """Rotate pairs (x[2i], x[2i+1]) by position-dependent angles; x: [B, H, T, D]."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(D), RMSNorm(D)
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(D, D, bias=False) for _ in range(4))
        self.w1, self.w3 = nn.Linear(D, HIDDEN, bias=False), nn.Linear(D, HIDDEN, bias=False)
        self.w2 = nn.Linear(HIDDEN, D, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        h = self.norm1(x)
        q, k, v = (w(h).view(b, t, HEADS, HEAD_DIM).transpose(1, 2) for w in (self.wq, self.wk, self.wv))
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        att = (q @ k.transpose(-2, -1)) * HEAD_DIM ** -0.5
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        x = x + self.wo((att @ v).transpose(1, 2).reshape(b, t, D))
        h = self.norm2(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, D)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.norm = RMSNorm(D)
        self.head = nn.Linear(D, VOCAB, bias=False)
        freqs = ROPE_THETA ** (-torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM)
        ang = torch.arange(SEQ).float()[:, None] * freqs[None, :]
        self.register_buffer("cos", ang.cos())
        self.register_buffer("sin", ang.sin())
        self.register_buffer("mask", torch.ones(SEQ, SEQ, dtype=torch.bool).triu(1))

    def forward(self, tokens, targets):
        x = self.emb(tokens)
        for blk in self.blocks:
            x = blk(x, self.cos, self.sin, self.mask)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.view(-1, VOCAB), targets.view(-1))


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model = Model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    data = torch.randint(0, VOCAB, (BATCH, SEQ + 1))
    tokens, targets = data[:, :-1].contiguous(), data[:, 1:].contiguous()
    times, cpu = [], []
    for i in range(steps + 2):
        t, c = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = model(tokens, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    step = statistics.median(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"pytorch {torch.__version__} threads={threads} seq={SEQ} d_model={D} step_s={step:.4f} "
          f"tokens_per_s={BATCH * SEQ / step:.0f} cpu_ms={statistics.median(cpu) * 1e3:.0f} peak_mib={peak:.0f} loss={loss.item():.4f}")


if __name__ == "__main__":
    main()
