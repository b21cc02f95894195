#!/usr/bin/python3
"""Writes the safetensors reference fixtures of tests/test_safetensors.c with numpy only, following the
published safetensors format exactly as the reference `safetensors` library lays it out:
  8-byte little-endian header length, compact JSON header ({"__metadata__": {...}} first, then each
  tensor {"dtype","shape","data_offsets"}), padded with spaces to a multiple of 8, then the data, the
  tensors ordered by dtype (widest first in the library's Dtype order) and then by name.
Also writes expected.txt: one line per tensor "hex(utf-8 name) dtype shape hex(bytes)" (shape "-" for
0-d, bytes "-" when empty), from numpy.

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


if __name__ == "__main__":
    main()
