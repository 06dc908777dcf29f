"""Writes the Hugging Face Llama fixtures that trainer/hf's tests read.

Run from the repository root with a python3 that has torch (transformers is not needed):

    python3 tools/hfref/make_fixture.py trainer/hf/testdata

It makes small models with random weights in Hugging Face's layout and writes:

    llama-f32/           a dense Llama (LlamaForCausalLM: grouped-query attention, untied
                         embeddings): config.json, model.safetensors (F32), logits.json
    llama-sharded/       the same weights rounded to BF16 and F16, in two shards with
                         model.safetensors.index.json, and their own logits.json
    llama31-f32/         the same weights as a Llama 3.1: rope_scaling "llama3" with an
                         original_max_position_embeddings of 16, so that the scaling
                         changes every RoPE frequency within the fixture's 12 tokens
    llama4-f32/          a Llama 4 text model (Llama4ForCausalLM), 4 layers: MoE on every
                         2nd layer (4 experts, top-1 sigmoid routing on the experts' input,
                         a shared expert), dense layers with intermediate_size_mlp 24 !=
                         intermediate_size 8, no RoPE on every 4th layer, qk norm, attention
                         temperature tuning with floor_scale 4, chunked attention over
                         chunks of 4 positions, rope_scaling llama3

logits.json holds the token ids and the logits of forward() or forward_llama4() below,
which follow transformers' modeling_llama (LlamaForCausalLM) and modeling_llama4
(Llama4ForCausalLM), eager attention in float32: RoPE's inverse frequencies in float32
(with _compute_llama3_parameters' scaling), rotate-half RoPE for Llama and complex
(interleaved) RoPE for Llama 4, RMSNorm in float32, attention scaled by 1/sqrt(head_dim).
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


def inv_freq(cfg, D):
    """RoPE's inverse frequencies [D/2], float32, as transformers computes them: the default
    rope_theta^(-2j/D), then _compute_llama3_parameters' scaling when rope_scaling says so."""
    freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    rs = cfg.get("rope_scaling")
    if not rs:
        return freq
    factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = 2 * math.pi / freq
    scaled = torch.where(wavelen > low_wavelen, freq / factor, freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


def forward(cfg, W, tokens):
    """LlamaForCausalLM's logits for one sequence of token ids: [T, V]."""
    T = len(tokens)
    C, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D, eps = C // H, cfg["rms_norm_eps"]
    freqs = torch.arange(T).float()[:, None] * inv_freq(cfg, D)[None, :]  # [T, D/2]
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


LLAMA4 = {
    "architectures": ["Llama4ForCausalLM"],
    "model_type": "llama4_text",
    "hidden_size": 16,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 8,
    "intermediate_size": 8,
    "intermediate_size_mlp": 24,
    "vocab_size": 64,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 16},
    "max_position_embeddings": 64,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
    "attention_bias": False,
    "num_local_experts": 4,
    "num_experts_per_tok": 1,
    "interleave_moe_layer_step": 2,
    "no_rope_layer_interval": 4,
    "use_qk_norm": True,
    "attn_temperature_tuning": True,
    "floor_scale": 4,
    "attn_scale": 0.5,
    "attention_chunk_size": 4,
    "router_aux_loss_coef": 0.001,
    "torch_dtype": "float32",
}


def llama4_layers(cfg):
    """Llama4TextConfig's derived lists: which layers use RoPE and which are MoE."""
    L = cfg["num_hidden_layers"]
    rope = [int((i + 1) % cfg["no_rope_layer_interval"] != 0) for i in range(L)]
    step = cfg["interleave_moe_layer_step"]
    return rope, list(range(step - 1, L, step))


def weights_llama4(cfg, gen):
    C, H, KV, D = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    G, F, E, V = cfg["intermediate_size"], cfg["intermediate_size_mlp"], cfg["num_local_experts"], cfg["vocab_size"]
    rnd = lambda *s: torch.randn(*s, generator=gen) * 0.3
    _, moe = llama4_layers(cfg)
    W = {"model.embed_tokens.weight": rnd(V, C)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        W[p + "input_layernorm.weight"] = 1 + rnd(C)
        W[p + "self_attn.q_proj.weight"] = rnd(H * D, C)
        W[p + "self_attn.k_proj.weight"] = rnd(KV * D, C)
        W[p + "self_attn.v_proj.weight"] = rnd(KV * D, C)
        W[p + "self_attn.o_proj.weight"] = rnd(C, H * D)
        W[p + "post_attention_layernorm.weight"] = 1 + rnd(C)
        f = p + "feed_forward."
        if i in moe:
            W[f + "router.weight"] = rnd(E, C) * 3  # spread the logits: distinct top-1 experts
            W[f + "experts.gate_up_proj"] = rnd(E, C, 2 * G)
            W[f + "experts.down_proj"] = rnd(E, G, C)
            W[f + "shared_expert.gate_proj.weight"] = rnd(G, C)
            W[f + "shared_expert.up_proj.weight"] = rnd(G, C)
            W[f + "shared_expert.down_proj.weight"] = rnd(C, G)
        else:
            W[f + "gate_proj.weight"] = rnd(F, C)
            W[f + "up_proj.weight"] = rnd(F, C)
            W[f + "down_proj.weight"] = rnd(C, F)
    W["model.norm.weight"] = 1 + rnd(C)
    W["lm_head.weight"] = rnd(V, C)
    return W


def l2norm(x, eps):
    """Llama4TextL2Norm: RMS normalisation without a gain."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def mlp(x, gate, up, down):
    return (Fn.silu(x @ gate.T) * (x @ up.T)) @ down.T


def forward_llama4(cfg, W, tokens):
    """Llama4ForCausalLM's logits for one sequence of token ids: [T, V]."""
    T = len(tokens)
    C, H, KV, D = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    E, k, eps = cfg["num_local_experts"], cfg["num_experts_per_tok"], cfg["rms_norm_eps"]
    rope, moe = llama4_layers(cfg)
    pos = torch.arange(T)
    freqs = pos.float()[:, None] * inv_freq(cfg, D)[None, :]  # [T, D/2]
    freqs_cis = torch.polar(torch.ones_like(freqs), freqs)
    causal = pos[None, :] <= pos[:, None]  # [query, key]
    chunk = cfg["attention_chunk_size"]
    masks = {"full_attention": causal, "chunked_attention": causal & (pos[None, :] // chunk == pos[:, None] // chunk)}
    temp = torch.log1p(torch.floor((pos.float() + 1.0) / cfg["floor_scale"])) * cfg["attn_scale"] + 1.0
    x = W["model.embed_tokens.weight"][torch.tensor(tokens)]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(T, H, D)
        kk = (h @ W[p + "self_attn.k_proj.weight"].T).view(T, KV, D)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(T, KV, D).transpose(0, 1)
        if rope[i]:  # apply_rotary_emb: pairs (2j, 2j+1) as complex numbers
            q = torch.view_as_real(torch.view_as_complex(q.reshape(T, H, D // 2, 2)) * freqs_cis[:, None, :]).flatten(2)
            kk = torch.view_as_real(torch.view_as_complex(kk.reshape(T, KV, D // 2, 2)) * freqs_cis[:, None, :]).flatten(2)
            if cfg["use_qk_norm"]:
                q, kk = l2norm(q, eps), l2norm(kk, eps)
        elif cfg["attn_temperature_tuning"]:
            q = q * temp[:, None, None]
        q, kk = q.transpose(0, 1), kk.transpose(0, 1)
        kk, v = kk.repeat_interleave(H // KV, 0), v.repeat_interleave(H // KV, 0)
        mask = masks["chunked_attention" if rope[i] else "full_attention"]
        s = (q @ kk.transpose(-1, -2)) * D**-0.5
        s = s.masked_fill(~mask, float("-inf"))
        out = (s.softmax(-1) @ v).transpose(0, 1).reshape(T, H * D)
        x = x + out @ W[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        f = p + "feed_forward."
        if i in moe:  # Llama4TextMoe
            logits = h @ W[f + "router.weight"].T  # [T, E]
            top_v, top_i = torch.topk(logits, k, dim=1)
            scores = torch.full_like(logits, float("-inf")).scatter_(1, top_i, top_v).sigmoid()
            routed_in = h.repeat(E, 1) * scores.transpose(0, 1).reshape(-1, 1)  # [E*T, C]
            gate_up = torch.bmm(routed_in.view(E, T, C), W[f + "experts.gate_up_proj"])
            gate, up = gate_up.chunk(2, dim=-1)
            routed = torch.bmm(up * Fn.silu(gate), W[f + "experts.down_proj"])  # [E, T, C]
            y = mlp(h, W[f + "shared_expert.gate_proj.weight"], W[f + "shared_expert.up_proj.weight"],
                    W[f + "shared_expert.down_proj.weight"]) + routed.sum(0)
        else:
            y = mlp(h, W[f + "gate_proj.weight"], W[f + "up_proj.weight"], W[f + "down_proj.weight"])
        x = x + y
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


def write(folder, cfg, shards, fwd=forward):
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
    logits = fwd(cfg, f32, TOKENS)
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
    llama31 = dict(CONFIG, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                         "high_freq_factor": 4.0, "original_max_position_embeddings": 16})
    write(os.path.join(out, "llama31-f32"), llama31, [W])
    write(os.path.join(out, "llama4-f32"), LLAMA4, [weights_llama4(LLAMA4, gen)], forward_llama4)


if __name__ == "__main__":
    main()
