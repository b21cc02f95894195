#!/usr/bin/env python3
"""Reference logits of the tiny Qwen2 fixture with q8_0 / q4_0 weights, computed in float64 numpy.

    python3 scripts/make_qwen2_quant_fixtures.py   (from the repository root; numpy only)

The forward pass is a float64 re-statement of HF's Qwen2ForCausalLM (RMSNorm, q/k/v with biases,
rotate_half RoPE, causal GQA attention, SwiGLU, lm_head). It is first checked against the HF logits
committed in tests/fixtures/models/qwen2_tiny/expected.safetensors (f32 weights, must agree to 1e-5),
then run with every 2-D matrix quantised and dequantised with ggml's reference quantisers
(quantize_row_q8_0_ref / quantize_row_q4_0_ref, float32 arithmetic), and with the activations of
every product against a quantised matrix quantised to q8_0 as ggml does before its integer dot
products (ggml_vec_dot_q8_0_q8_0 / q4_0_q8_0). The embedding lookup dequantises the row. Also the
same with the LoRA adapter merged (W + alpha/r * B @ A in float32) before quantising to q8_0.

Writes tests/fixtures/models/qwen2_quant/expected.safetensors: logits_q8_0, logits_q4_0,
logits_lora_q8_0 ([12, 256] f32 each) and ids.
"""
import json
import os
import struct

import numpy as np

ROOT = "tests/fixtures/models"


def read_st(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    out = {}
    dt = {"F32": np.float32, "I32": np.int32, "I64": np.int64}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dt[v["dtype"]]).reshape(v["shape"])
    return out


def write_st(path, tensors):
    hdr, off, blobs = {}, 0, []
    for k, a in tensors.items():
        b = np.ascontiguousarray(a).tobytes()
        hdr[k] = {"dtype": {np.float32: "F32", np.int32: "I32"}[a.dtype.type], "shape": list(a.shape),
                  "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# --- ggml reference quantisers (float32 arithmetic), returning (d as float32 of the f16, q) ----------
def q8_0_blocks(x):
    b = x.reshape(-1, 32).astype(np.float32)
    amax = np.abs(b).max(axis=1, keepdims=True)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        idv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    v = (b * idv).astype(np.float32)
    q = (np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))).astype(np.int32)  # roundf
    return d.astype(np.float16).astype(np.float64), q.astype(np.float64)


def q4_0_blocks(x):
    b = x.reshape(-1, 32).astype(np.float32)
    imax = np.abs(b).argmax(axis=1)
    mx = b[np.arange(b.shape[0]), imax][:, None]
    d = (mx / np.float32(-8)).astype(np.float32)
    with np.errstate(divide="ignore"):
        idv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    v = ((b * idv).astype(np.float32) + np.float32(8.5)).astype(np.float32)
    q = np.minimum(np.trunc(v).astype(np.int32).astype(np.int8).astype(np.int32), 15)
    return d.astype(np.float16).astype(np.float64), (q - 8).astype(np.float64)


QUANT = {"q8_0": q8_0_blocks, "q4_0": q4_0_blocks}


class Mat:
    """A [out, in] weight: float (None = no quantisation) or quantised blocks."""

    def __init__(self, w, qt):
        self.w, self.qt = w.astype(np.float32), qt
        if qt:
            d, q = QUANT[qt](self.w)
            n_out, n_in = w.shape
            self.d = d.reshape(n_out, n_in // 32)
            self.q = q.reshape(n_out, n_in // 32, 32)
            self.deq = (self.q * self.d[:, :, None]).reshape(n_out, n_in)

    def __call__(self, x):  # x [n, in] -> [n, out]
        if not self.qt:
            return x @ self.w.astype(np.float64).T
        xd, xq = q8_0_blocks(x.astype(np.float32))  # activations to q8_0, as ggml
        n = x.shape[0]
        xd = xd.reshape(n, -1)
        xq = xq.reshape(n, -1, 32)
        # per block: (sum_i qw * qx) * dw * dx
        s = np.einsum("obi,nbi->nob", self.q, xq)
        return np.einsum("nob,ob,nb->no", s, self.d, xd)

    def rows(self, ids):
        return (self.deq if self.qt else self.w.astype(np.float64))[ids]


def forward(sd, cfg, ids, qt=None):
    E, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = E // H
    theta = cfg.get("rope_theta", cfg.get("rope_parameters", {}).get("rope_theta", 10000.0))
    eps = cfg["rms_norm_eps"]
    f64 = lambda k: sd[k].astype(np.float64)
    emb = Mat(sd["model.embed_tokens.weight"], qt)
    x = emb.rows(ids)
    n = len(ids)
    pos = np.arange(n, dtype=np.float64)
    inv = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    ang = np.outer(pos, inv)
    cos, sin = np.concatenate([np.cos(ang)] * 2, -1), np.concatenate([np.sin(ang)] * 2, -1)

    def rope(t):  # [n, h, d]
        rot = np.concatenate([-t[..., d // 2:], t[..., :d // 2]], -1)
        return t * cos[:, None, :] + rot * sin[:, None, :]

    def rms(t, w):
        return t / np.sqrt((t * t).mean(-1, keepdims=True) + eps) * w

    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, f64(p + "input_layernorm.weight"))
        q = Mat(sd[p + "self_attn.q_proj.weight"], qt)(h) + f64(p + "self_attn.q_proj.bias")
        k = Mat(sd[p + "self_attn.k_proj.weight"], qt)(h) + f64(p + "self_attn.k_proj.bias")
        v = Mat(sd[p + "self_attn.v_proj.weight"], qt)(h) + f64(p + "self_attn.v_proj.bias")
        q, k, v = rope(q.reshape(n, H, d)), rope(k.reshape(n, KV, d)), v.reshape(n, KV, d)
        k, v = np.repeat(k, H // KV, axis=1), np.repeat(v, H // KV, axis=1)
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(d)
        s = s + np.triu(np.full((n, n), -np.inf), 1)[None]
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = np.einsum("hts,shd->thd", s, v).reshape(n, H * d)
        x = x + Mat(sd[p + "self_attn.o_proj.weight"], qt)(a)
        h = rms(x, f64(p + "post_attention_layernorm.weight"))
        g = Mat(sd[p + "mlp.gate_proj.weight"], qt)(h)
        u = Mat(sd[p + "mlp.up_proj.weight"], qt)(h)
        x = x + Mat(sd[p + "mlp.down_proj.weight"], qt)(g / (1 + np.exp(-g)) * u)
    h = rms(x, f64("model.norm.weight"))
    head = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
    return Mat(head, qt)(h)


def main():
    base = f"{ROOT}/qwen2_tiny"
    cfg = json.load(open(f"{base}/config.json"))
    sd = read_st(f"{base}/model.safetensors")
    exp = read_st(f"{base}/expected.safetensors")
    ids = exp["ids"].astype(np.int64)
    ref = forward(sd, cfg, ids)
    err = np.abs(ref - exp["logits"]).max() / np.abs(exp["logits"]).max()
    print("float64 re-statement vs HF logits: rel err %.2e" % err)
    assert err < 1e-5, err
    out = {"ids": exp["ids"].astype(np.int32)}
    for qt in ("q8_0", "q4_0"):
        lg = forward(sd, cfg, ids, qt)
        out["logits_" + qt] = lg.astype(np.float32)
        print("%s vs HF: rel err %.3f" % (qt, np.abs(lg - exp["logits"]).max() / np.abs(exp["logits"]).max()))
    # LoRA merged in float32, then q8_0
    ad = read_st(f"{ROOT}/qwen2_lora/adapter_model.safetensors")
    acfg = json.load(open(f"{ROOT}/qwen2_lora/adapter_config.json"))
    scale = np.float32(acfg["lora_alpha"] / acfg["r"])
    merged = dict(sd)
    for k in ad:
        if ".lora_A." not in k:
            continue
        tgt = k.split("base_model.model.")[1].replace(".lora_A.weight", ".weight")
        A, B = ad[k], ad[k.replace("lora_A", "lora_B")]
        merged[tgt] = (sd[tgt] + scale * (B @ A)).astype(np.float32)
    lexp = read_st(f"{ROOT}/qwen2_lora/expected.safetensors")
    lref = forward(merged, cfg, ids)
    lerr = np.abs(lref - lexp["logits"]).max() / np.abs(lexp["logits"]).max()
    print("float64 re-statement with LoRA vs HF: rel err %.2e" % lerr)
    assert lerr < 1e-5, lerr
    out["logits_lora_q8_0"] = forward(merged, cfg, ids, "q8_0").astype(np.float32)
    write_st(f"{ROOT}/qwen2_quant/expected.safetensors", out)
    print("wrote", f"{ROOT}/qwen2_quant/expected.safetensors")


if __name__ == "__main__":
    main()
