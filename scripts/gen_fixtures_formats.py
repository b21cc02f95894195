#!/usr/bin/python3
"""Writes the safetensors reference fixtures of tests/test_safetensors.c with numpy only, following the
published safetensors format exactly as the reference `safetensors` library lays it out:
  8-byte little-endian header length, compact JSON header ({"__metadata__": {...}} first, then each
  tensor {"dtype","shape","data_offsets"}), padded with spaces to a multiple of 8, then the data, the
  tensors ordered by dtype (widest first in the library's Dtype order) and then by name.
Also writes expected.txt: one line per tensor "hex(utf-8 name) dtype shape hex(bytes)" (shape "-" for
0-d, bytes "-" when empty), from numpy.

It also writes tests/fixtures/gguf/hf_tiny/, a tiny Qwen2 model folder (config.json + model.safetensors
with f32, f16 and bf16 tensors, a row length that is not a multiple of 32, an all-zero row and exact
rounding ties), and for `mer quantize --type` q8_0, q4_0 and f16 the tensors llama.cpp's conventions expect in the GGUF:
expected_<type>.txt, one line per tensor "gguf_name ggml_type ne0,ne1,.. hex(data)". Names follow
llama.cpp's Qwen2 tensor map; q8_0 and q4_0 blocks follow ggml's reference quantisers
(quantize_row_q8_0_ref / quantize_row_q4_0_ref) computed in float32 with numpy; f16 is numpy's cast and
bf16 is round-to-nearest-even of the float32 bits, as torch rounds.

usage: /usr/bin/python3 scripts/gen_fixtures_formats.py   (run from the repository root)
"""
import json
import os
import struct

import numpy as np

OUT = "tests/fixtures/safetensors"
# The reference library's Dtype enum order (its writer sorts by it, descending).
ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64",
         "I64", "U64"]


def bf16_bits(a):
    """float32 -> bfloat16 bit patterns, round to nearest even (as torch does for finite values)."""
    u = np.asarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r


def check_bf16_against_torch():
    """When Debian's python3-torch is there, the bf16 rounding above must agree with torch's."""
    try:
        import torch
    except ImportError:
        print("note: torch not importable; bf16 rounding not cross-checked")
        return
    x = np.random.default_rng(3).standard_normal(100000).astype(np.float32) * np.float32(1e3)
    x[:4] = [1.00390625, 1.01171875, -1.00390625, 3.0e38]  # ties to even, both ways; near max
    ref = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(bf16_bits(x), ref), "bf16 rounding differs from torch"


def serialize(tensors, metadata=None):
    """tensors: {name: (dtype_str, shape, raw_bytes)}"""
    items = sorted(tensors.items(), key=lambda kv: (-ORDER.index(kv[1][0]), kv[0].encode("utf-8")))
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    off = 0
    for name, (dt, shape, raw) in items:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(raw for _, (_, _, raw) in items)


def t(dt, arr):
    arr = np.array(arr, order="C")  # keeps 0-d arrays 0-d
    return (dt, arr.shape, arr.tobytes())


def main():
    rng = np.random.default_rng(20251125)
    w = rng.standard_normal((3, 5)).astype(np.float32)
    tensors = {
        "model.embed.weight": t("F32", w),
        "model.norm.weight": t("F16", rng.standard_normal(6).astype(np.float16)),
        "model.proj.weight": ("BF16", (2, 4), bf16_bits(rng.standard_normal((2, 4))).tobytes()),
        "position_ids": t("I64", np.arange(7, dtype=np.int64).reshape(1, 7)),
        "counts": t("I32", np.array([-3, 0, 2**31 - 1], dtype=np.int32)),
        "mask": t("BOOL", np.array([True, False, True, True])),
        "bytes": t("U8", np.array([0, 255, 7], dtype=np.uint8)),
        "small": t("I8", np.array([-128, 127], dtype=np.int8)),
        "shorts": t("I16", np.array([-2, 300], dtype=np.int16)),
        "scale": t("F64", np.array(0.125, dtype=np.float64)),  # 0-d
        "empty": t("F32", np.zeros((0, 4), dtype=np.float32)),
        "uni\u00e9\"q\\": t("F32", np.array([1.5], dtype=np.float32)),
    }
    meta = {"format": "pt", "note": "line\nbreak \u00e9"}
    os.makedirs(OUT, exist_ok=True)
    with open(f"{OUT}/ref.safetensors", "wb") as f:
        f.write(serialize(tensors, meta))
    with open(f"{OUT}/expected.txt", "w", encoding="utf-8") as f:
        for name in sorted(tensors):
            dt, shape, raw = tensors[name]
            f.write("%s\t%s\t%s\t%s\n" % (name.encode("utf-8").hex(), dt,
                                           ",".join(str(s) for s in shape) or "-", raw.hex() or "-"))
        # f32 values of model.embed.weight, for a numeric check
        f.write("#values\t" + " ".join(repr(float(x)) for x in w.ravel()) + "\n")

    # A sharded checkpoint: two shards, an index and a config.json.
    sd = f"{OUT}/sharded"
    os.makedirs(sd, exist_ok=True)
    a = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.standard_normal((3,)).astype(np.float32)
    c = rng.standard_normal((2, 2)).astype(np.float16)
    shard1 = {"layers.0.w": t("F32", a), "layers.0.b": t("F32", b)}
    shard2 = {"layers.1.w": t("F16", c)}
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    for n, s in zip(names, (shard1, shard2)):
        with open(f"{sd}/{n}", "wb") as f:
            f.write(serialize(s, {"format": "pt"}))
    wm = {k: names[0] for k in shard1}
    wm.update({k: names[1] for k in shard2})
    total = sum(len(v[2]) for v in list(shard1.values()) + list(shard2.values()))
    with open(f"{sd}/model.safetensors.index.json", "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(wm.items()))}, f, indent=2)
    with open(f"{sd}/config.json", "w") as f:
        json.dump({"model_type": "toy", "hidden_size": 3, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
                   "vision_config": {"hidden_size": 8}}, f, indent=2)
    with open(f"{sd}/expected.txt", "w") as f:
        for name, (dt, shape, raw) in sorted({**shard1, **shard2}.items()):
            f.write("%s\t%s\t%s\t%s\n" % (name.encode("utf-8").hex(), dt, ",".join(str(s) for s in shape), raw.hex()))


def f32_of(dt, raw, shape):
    if dt == "F32":
        return np.frombuffer(raw, dtype=np.float32).reshape(shape)
    if dt == "F16":
        return np.frombuffer(raw, dtype=np.float16).astype(np.float32).reshape(shape)
    if dt == "BF16":
        u = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
        return u.view(np.float32).reshape(shape)
    raise ValueError(dt)


def q8_0(x):
    """ggml quantize_row_q8_0_ref, float32 arithmetic."""
    b = x.reshape(-1, 32).astype(np.float32)
    amax = np.abs(b).max(axis=1, keepdims=True)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        idv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    v = (b * idv).astype(np.float32)
    q = (np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))).astype(np.int8)  # roundf: half away from zero
    out = bytearray()
    for i in range(b.shape[0]):
        out += d[i].astype(np.float16).tobytes() + q[i].tobytes()
    return bytes(out)


def q4_0(x):
    """ggml quantize_row_q4_0_ref, float32 arithmetic."""
    b = x.reshape(-1, 32).astype(np.float32)
    imax = np.abs(b).argmax(axis=1)  # first of equal magnitudes, like the C loop's strict '<'
    mx = b[np.arange(b.shape[0]), imax][:, None]
    d = (mx / np.float32(-8)).astype(np.float32)
    with np.errstate(divide="ignore"):
        idv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    v = ((b * idv).astype(np.float32) + np.float32(8.5)).astype(np.float32)
    q = np.minimum(np.trunc(v).astype(np.int32).astype(np.int8).astype(np.int32), 15).astype(np.uint8)
    out = bytearray()
    for i in range(b.shape[0]):
        packed = (q[i, :16] | (q[i, 16:] << 4)).astype(np.uint8)
        out += d[i].astype(np.float16).tobytes() + packed.tobytes()
    return bytes(out)


# llama.cpp's Qwen2 names (gguf-py tensor_mapping / convert_hf_to_gguf.py), spelled out here.
QWEN2_GGUF = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "model.layers.0.input_layernorm.weight": "blk.0.attn_norm.weight",
    "model.layers.0.post_attention_layernorm.weight": "blk.0.ffn_norm.weight",
    "model.layers.0.self_attn.q_proj.weight": "blk.0.attn_q.weight",
    "model.layers.0.self_attn.q_proj.bias": "blk.0.attn_q.bias",
    "model.layers.0.self_attn.k_proj.weight": "blk.0.attn_k.weight",
    "model.layers.0.self_attn.k_proj.bias": "blk.0.attn_k.bias",
    "model.layers.0.self_attn.v_proj.weight": "blk.0.attn_v.weight",
    "model.layers.0.self_attn.v_proj.bias": "blk.0.attn_v.bias",
    "model.layers.0.self_attn.o_proj.weight": "blk.0.attn_output.weight",
    "model.layers.0.mlp.gate_proj.weight": "blk.0.ffn_gate.weight",
    "model.layers.0.mlp.up_proj.weight": "blk.0.ffn_up.weight",
    "model.layers.0.mlp.down_proj.weight": "blk.0.ffn_down.weight",
}
GGML = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 8, "i64": 27, "bf16": 30}


def hf_tiny():
    out = "tests/fixtures/gguf/hf_tiny"
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    H, KV, FF, V = 32, 32, 64, 16
    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": H,
           "intermediate_size": FF, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
           "max_position_embeddings": 128, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "vocab_size": V,
           "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
    with open(f"{out}/config.json", "w") as f:
        json.dump(cfg, f, indent=2)

    def rnd(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    q = rnd(H, H)
    q[3] = 0  # an all-zero row: d = 0
    q[5, :32] = np.array([127] + [0.5, 1.5, -0.5, -1.5, 2.5, -2.5] + [0.0] * 25, dtype=np.float32)  # q8 ties
    q[6, :32] = np.array([-8, 7, 6.5, -7.5, 0.5, 8, -0.5] + [0.0] * 25, dtype=np.float32)  # q4 edges (max -8 first)
    tensors = {
        "model.embed_tokens.weight": ("BF16", (V, H), bf16_bits(rnd(V, H)).tobytes()),
        "model.norm.weight": t("F32", rnd(H)),
        "lm_head.weight": t("F32", rnd(V, H)),
        "model.layers.0.input_layernorm.weight": t("F32", rnd(H)),
        "model.layers.0.post_attention_layernorm.weight": t("F32", rnd(H)),
        "model.layers.0.self_attn.q_proj.weight": t("F32", q),
        "model.layers.0.self_attn.q_proj.bias": t("F32", rnd(H)),
        "model.layers.0.self_attn.k_proj.weight": t("F16", rnd(KV, H).astype(np.float16)),
        "model.layers.0.self_attn.k_proj.bias": t("F32", rnd(KV)),
        "model.layers.0.self_attn.v_proj.weight": ("BF16", (KV, H), bf16_bits(rnd(KV, H)).tobytes()),
        "model.layers.0.self_attn.v_proj.bias": t("F32", rnd(KV)),
        "model.layers.0.self_attn.o_proj.weight": t("F32", rnd(H, H)),
        "model.layers.0.mlp.gate_proj.weight": t("F32", rnd(FF, H)),
        "model.layers.0.mlp.up_proj.weight": t("F32", rnd(FF, H)),
        "model.layers.0.mlp.down_proj.weight": t("F32", rnd(H, FF)),
        "extra.odd_rows.weight": t("F32", rnd(2, 48)),  # 48 is not a multiple of 32
        "extra.position_ids": t("I64", np.arange(3, dtype=np.int64)),
    }
    with open(f"{out}/model.safetensors", "wb") as f:
        f.write(serialize(tensors, {"format": "pt"}))
    for qt in ("q8_0", "q4_0", "f16"):
        lines = []
        for name in sorted(tensors):  # the test matches by name
            dt, shape, raw = tensors[name]
            gname = QWEN2_GGUF.get(name, name)
            ne = ",".join(str(s) for s in reversed(shape))
            if dt == "I64":
                lines.append((gname, "i64", ne, raw))
                continue
            x = f32_of(dt, raw, shape)
            typ = qt
            if len(shape) <= 1 or (qt in ("q8_0", "q4_0") and shape[-1] % 32):
                typ = "f32"
            if typ == "f32":
                data = x.astype(np.float32).tobytes()
            elif typ == "f16":
                data = x.astype(np.float16).tobytes()
            elif typ == "bf16":
                data = bf16_bits(x).tobytes()
            elif typ == "q8_0":
                data = q8_0(x)
            else:
                data = q4_0(x)
            lines.append((gname, typ, ne, data))
        with open(f"{out}/expected_{qt}.txt", "w") as f:
            for gname, typ, ne, data in lines:
                f.write("%s\t%d\t%s\t%s\n" % (gname, GGML[typ], ne, data.hex()))


if __name__ == "__main__":
    check_bf16_against_torch()
    main()
    hf_tiny()
