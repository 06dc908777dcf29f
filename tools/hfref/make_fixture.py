"""Writes the Hugging Face Llama fixtures that trainer/hf's tests read.

Run from the repository root with a python3 that has torch (transformers is not needed):

    python3 tools/hfref/make_fixture.py trainer/hf/testdata

It makes a small dense Llama with random weights (grouped-query attention, untied
embeddings) in Hugging Face's layout and writes two folders:

    llama-f32/           config.json, model.safetensors (F32), logits.json
    llama-sharded/       the same weights rounded to BF16 and F16, in two shards with
                         model.safetensors.index.json, and their own logits.json

logits.json holds the token ids and the logits of forward() below, which follows
transformers' modeling_llama (LlamaForCausalLM, eager attention): rotate-half RoPE with
inv_freq in float32, RMSNorm in float32, attention scaled by 1/sqrt(head_dim).
"""
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as Fn

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 48,
    "vocab_size": 64,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 64,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
    "attention_bias": False,
    "mlp_bias": False,
    "rope_scaling": None,
    "torch_dtype": "float32",
}
TOKENS = [1, 7, 33, 2, 60, 15, 15, 41, 0, 63, 8, 22]


def weights(cfg, gen):
    C, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D, F, V = C // H, cfg["intermediate_size"], cfg["vocab_size"]
    rnd = lambda *s: torch.randn(*s, generator=gen) * 0.2
    W = {"model.embed_tokens.weight": rnd(V, C)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        W[p + "input_layernorm.weight"] = 1 + rnd(C)
        W[p + "self_attn.q_proj.weight"] = rnd(H * D, C)
        W[p + "self_attn.k_proj.weight"] = rnd(KV * D, C)
        W[p + "self_attn.v_proj.weight"] = rnd(KV * D, C)
        W[p + "self_attn.o_proj.weight"] = rnd(C, H * D)
        W[p + "post_attention_layernorm.weight"] = 1 + rnd(C)
        W[p + "mlp.gate_proj.weight"] = rnd(F, C)
        W[p + "mlp.up_proj.weight"] = rnd(F, C)
        W[p + "mlp.down_proj.weight"] = rnd(C, F)
    W["model.norm.weight"] = 1 + rnd(C)
    W["lm_head.weight"] = rnd(V, C)
    return W


def rmsnorm(x, g, eps):
    return g * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), -1)


def forward(cfg, W, tokens):
    """LlamaForCausalLM's logits for one sequence of token ids: [T, V]."""
    T = len(tokens)
    C, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D, eps = C // H, cfg["rms_norm_eps"]
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    freqs = torch.arange(T).float()[:, None] * inv_freq[None, :]  # [T, D/2]
    emb = torch.cat((freqs, freqs), -1)
    cos, sin = emb.cos()[None], emb.sin()[None]  # [1, T, D]
    x = W["model.embed_tokens.weight"][torch.tensor(tokens)]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(T, H, D).transpose(0, 1)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(T, KV, D).transpose(0, 1)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(T, KV, D).transpose(0, 1)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(H // KV, 0), v.repeat_interleave(H // KV, 0)
        s = q @ k.transpose(-1, -2) / math.sqrt(D) + mask
        out = (s.softmax(-1) @ v).transpose(0, 1).reshape(T, H * D)
        x = x + out @ W[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        g, u = h @ W[p + "mlp.gate_proj.weight"].T, h @ W[p + "mlp.up_proj.weight"].T
        x = x + (Fn.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rmsnorm(x, W["model.norm.weight"], eps)
    return x @ W["lm_head.weight"].T


DTYPES = {torch.float32: ("F32", torch.int32), torch.bfloat16: ("BF16", torch.int16), torch.float16: ("F16", torch.int16)}


def write_safetensors(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        dtype, as_int = DTYPES[t.dtype]
        b = t.contiguous().view(as_int).numpy().astype(t.view(as_int).numpy().dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    js = json.dumps(header).encode()
    js += b" " * (-len(js) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js + b"".join(blobs))


def write(folder, cfg, shards):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    if len(shards) == 1:
        write_safetensors(os.path.join(folder, "model.safetensors"), shards[0])
    else:
        index = {"metadata": {}, "weight_map": {}}
        for n, shard in enumerate(shards):
            name = f"model-{n + 1:05d}-of-{len(shards):05d}.safetensors"
            write_safetensors(os.path.join(folder, name), shard)
            index["weight_map"].update({k: name for k in shard})
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)
    f32 = {k: v.float() for s in shards for k, v in s.items()}
    logits = forward(cfg, f32, TOKENS)
    with open(os.path.join(folder, "logits.json"), "w") as f:
        json.dump({"tokens": TOKENS, "logits": logits.tolist()}, f)


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    W = weights(CONFIG, gen)
    write(os.path.join(out, "llama-f32"), CONFIG, [W])
    names = list(W)
    half = len(names) // 2
    first = {k: W[k].to(torch.bfloat16) for k in names[:half]}
    second = {k: W[k].to(torch.float16) for k in names[half:]}
    write(os.path.join(out, "llama-sharded"), dict(CONFIG, torch_dtype="bfloat16"), [first, second])


if __name__ == "__main__":
    main()
