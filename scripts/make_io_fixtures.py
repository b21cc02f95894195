#!/usr/bin/python3
"""Writes the fixtures of tests/test_npz.c, tests/test_pickle.c and tests/test_torch.c with the REFERENCE
tools (numpy, Python's pickle, torch.save) into tests/fixtures/io/, plus tests/fixtures/io/expected.txt:
the values those tools hold for each fixture, rendered in a simple line format the C tests parse.

Run from the repository root:  /usr/bin/python3 scripts/make_io_fixtures.py
Needs python3-numpy; the .pth fixtures need Debian's python3-torch (skipped with a note when absent).

expected.txt lines (fields separated by one space; strings are hex of their UTF-8 bytes, '-' when empty):
  array <file> <member or -> <descr> <fortran 0/1> <ndim> <dims...> <n> <values...>
        values: floats as '%.17g' of the float64 value, ints decimal, bools 0/1, unicode as hex UTF-8
  labels <file> <n>            followed by n lines:  row <hex name> <hex labels>
  pickle <file> <rendering>    rendering of the unpickled value (see render())
  tensor <file> <name> <dtype> <ndim> <dims...> <n> <values as %.17g of float64>
  ntensors <file> <n>
"""
import collections
import io
import os
import pickle
import struct
import sys

import numpy as np

OUT = "tests/fixtures/io"


def hx(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return b.hex() if b else "-"


def fmt_val(v, kind):
    if kind == "f":
        return "%.17g" % float(v)
    if kind == "b":
        return "1" if v else "0"
    if kind == "U":
        return hx(str(v))
    return str(int(v))


def array_line(fname, member, a):
    a = np.asarray(a)
    kind = a.dtype.kind
    # values in the order the bytes are stored: C order, or Fortran order for fortran_order arrays
    fortran = a.flags.f_contiguous and not a.flags.c_contiguous
    flat = a.ravel(order="F" if fortran else "C")
    vals = [fmt_val(v, kind) for v in flat]
    descr = np.lib.format.dtype_to_descr(a.dtype)
    return " ".join(["array", fname, member or "-", descr, "1" if fortran else "0", str(a.ndim)]
                    + [str(d) for d in a.shape] + [str(flat.size)] + vals)


def render(v):
    """A canonical text form of a plain Python value; test_pickle.c renders its tree the same way."""
    if v is None:
        return "None"
    if v is True:
        return "True"
    if v is False:
        return "False"
    if isinstance(v, int):
        return "i%d" % v
    if isinstance(v, float):
        return "f%.17g" % v
    if isinstance(v, str):
        return "u" + hx(v)
    if isinstance(v, (bytes, bytearray)):
        return "b" + hx(v)
    if isinstance(v, tuple):
        return "(" + ",".join(render(x) for x in v) + ")"
    if isinstance(v, list):
        return "[" + ",".join(render(x) for x in v) + "]"
    if isinstance(v, (set, frozenset)):
        return "S{" + ",".join(render(x) for x in v) + "}"
    if isinstance(v, dict):
        return "{" + ",".join(render(k) + ":" + render(x) for k, x in v.items()) + "}"
    raise TypeError(type(v))


NAMES = ["sample_00000007", "sample_00000012", "样本_中文", "emoji_😀", "sample_00000099"]
ITEMS = ["[excited, joyful, happy]", "[]", "[开心, 快乐]", "[😀 happy, 🎉]", "[sad]"]
REASONS = ["The person smiles broadly; the tone is cheerful.", "", "他看起来很开心。", "x", "Emoji 😀 and ñ é"]


def main():
    os.makedirs(OUT, exist_ok=True)
    exp = []

    # --- npz label files, as the baselines write them ------------------------------------------------
    np.savez_compressed(f"{OUT}/openset.npz", filenames=NAMES, fileitems=ITEMS)
    d = np.load(f"{OUT}/openset.npz")
    exp.append(f"labels openset.npz {len(d['filenames'])}")
    for n, t in zip(d["filenames"].tolist(), d["fileitems"].tolist()):
        exp.append(f"row {hx(n)} {hx(t)}")

    name2reason = dict(zip(NAMES, REASONS))
    np.savez_compressed(f"{OUT}/result.npz", name2reason=name2reason)
    r = np.load(f"{OUT}/result.npz", allow_pickle=True)["name2reason"].tolist()
    exp.append(f"labels result.npz {len(r)}")
    for n, t in r.items():
        exp.append(f"row {hx(n)} {hx(t)}")

    # an empty submission (numpy stores an empty list as a float64 array of shape (0,))
    np.savez_compressed(f"{OUT}/empty-openset.npz", filenames=[], fileitems=[])
    exp.append("labels empty-openset.npz 0")

    # a result whose dict holds a non-str value: an error naming the key
    np.savez_compressed(f"{OUT}/badvalue.npz", name2reason={"sample_1": "ok", "sample_2": ["a", "list"]})

    # --- arrays of every supported dtype, uncompressed and compressed --------------------------------
    rng = np.random.default_rng(1234)
    arrays = collections.OrderedDict()
    arrays["f4"] = rng.standard_normal((3, 4)).astype("<f4")
    arrays["f8"] = rng.standard_normal(5).astype("<f8")
    arrays["f2"] = rng.standard_normal((2, 3)).astype("<f2")
    arrays["i4"] = rng.integers(-2**31, 2**31 - 1, 6, dtype=np.int64).astype("<i4")
    arrays["i8"] = np.array([-2**63, -1, 0, 1, 2**63 - 1], dtype="<i8")
    arrays["u1"] = np.arange(250, 256, dtype=np.uint8)
    arrays["i1"] = np.array([-128, -1, 0, 127], dtype=np.int8)
    arrays["b1"] = np.array([True, False, True])
    arrays["fortran"] = np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3))
    arrays["scalar"] = np.array(2.5, dtype="<f8")
    arrays["text"] = np.array([["a", "中文"], ["😀", ""]])
    arrays["empty"] = np.zeros((0, 3), dtype="<f4")
    np.savez(f"{OUT}/arrays.npz", **arrays)
    np.savez_compressed(f"{OUT}/arrays-z.npz", **arrays)
    for fn in ("arrays.npz", "arrays-z.npz"):
        z = np.load(f"{OUT}/{fn}")
        for k in arrays:
            exp.append(array_line(fn, k, z[k]))

    # bare .npy files in the three format versions
    a = rng.standard_normal(7).astype("<f4")
    for ver in (1, 2, 3):
        with open(f"{OUT}/v{ver}.npy", "wb") as f:
            np.lib.format.write_array(f, a, version=(ver, 0))
        exp.append(array_line(f"v{ver}.npy", None, np.load(f"{OUT}/v{ver}.npy")))

    # --- pickles -------------------------------------------------------------------------------------
    value = {
        "none": None, "t": True, "f": False, "small": 7, "neg": -300, "big": 2**40 + 3, "huge": -(2**62),
        "pi": 3.141592653589793, "tiny": -1.5e-300, "s": "héllo 中文 😀", "empty": "", "b": b"\x00\xffab",
        "tuple": (1, "two", 3.0), "list": [[], [1], {"k": "v"}], "set": {5}, "frozen": frozenset([9]),
        "nested": collections.OrderedDict([("x", 1), ("y", [True, None])]),
    }
    shared = ["shared"]
    value["ref1"] = shared
    value["ref2"] = shared
    for proto in range(0, 6):
        v = dict(value)
        if proto < 3:
            v.pop("b")  # protocol < 3 pickles bytes through _codecs.encode: covered separately below
        fn = f"p{proto}.pkl"
        with open(f"{OUT}/{fn}", "wb") as f:
            pickle.dump(v, f, protocol=proto)
        with open(f"{OUT}/{fn}", "rb") as f:
            back = pickle.load(f)
        exp.append(f"pickle {fn} {render(back)}")
    with open(f"{OUT}/p2bytes.pkl", "wb") as f:
        pickle.dump({"b": b"\x00\xffab"}, f, protocol=2)
    exp.append("pickle p2bytes.pkl " + render({"b": b"\x00\xffab"}))

    # a str dict as pickle.dumps(d, protocol=2) writes it (the writer must match these bytes)
    import json
    fresh = json.loads(json.dumps(dict(zip(NAMES, REASONS)) | {"dup1": "same text", "dup2": "same text",
                                                               "one": "x", "e": "é", "z": ""}))
    with open(f"{OUT}/strdict.pkl", "wb") as f:
        f.write(pickle.dumps(fresh, protocol=2))
    exp.append("pickle strdict.pkl " + render(fresh))

    # hostile pickles: must be refused, never run
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > /tmp/mer_pwned",))
    with open(f"{OUT}/evil-system.pkl", "wb") as f:
        pickle.dump(Evil(), f, protocol=2)
    with open(f"{OUT}/evil-p0.pkl", "wb") as f:
        f.write(b"cos\nsystem\n(S'echo pwned > /tmp/mer_pwned'\ntR.")
    with open(f"{OUT}/evil-inst.pkl", "wb") as f:
        f.write(b"(S'echo pwned'\nios\nsystem\n.")
    # an npz whose object array smuggles os.system
    buf = io.BytesIO()
    np.save(buf, np.array(None, dtype=object))  # header for a 0-d object array
    hdr = buf.getvalue()
    hdr = hdr[:hdr.index(b"\n") + 1]
    import zipfile
    with zipfile.ZipFile(f"{OUT}/evil.npz", "w") as z:
        z.writestr("name2reason.npy", hdr + pickle.dumps(Evil(), protocol=2))

    # --- torch checkpoints ---------------------------------------------------------------------------
    try:
        import torch
    except ImportError:
        print("note: torch not installed; .pth fixtures not written", file=sys.stderr)
        torch = None
    if torch is not None:
        torch.manual_seed(0)
        sd = collections.OrderedDict()
        sd["llama_proj.weight"] = torch.randn(3, 4)
        sd["llama_proj.bias"] = torch.randn(3)
        sd["lora_A.weight"] = torch.randn(2, 4).half()
        sd["lora_B.weight"] = torch.randn(4, 2).bfloat16()
        base = torch.randn(5, 3)
        sd["transposed"] = base.t()                       # non-contiguous view (stride (1, 3))
        flat = torch.arange(20, dtype=torch.float32)
        sd["shared_a"] = flat[2:8].view(2, 3)            # shares storage, offset 2
        sd["shared_b"] = flat[10:14]                     # same storage, offset 10
        sd["ids"] = torch.tensor([1, -2, 3], dtype=torch.int64)
        sd["ids32"] = torch.tensor([7, 8], dtype=torch.int32)
        sd["mask"] = torch.tensor([True, False])
        sd["bytes"] = torch.tensor([0, 255], dtype=torch.uint8)
        sd["f64"] = torch.tensor([1.25, -2.5], dtype=torch.float64)
        sd["scalar"] = torch.tensor(4.5)
        sd["param"] = torch.nn.Parameter(torch.randn(2, 2))
        m = torch.nn.Linear(2, 2)  # a real state_dict (with _metadata, hence an OrderedDict BUILD)
        real = m.state_dict()
        for k, v in real.items():
            sd["linear." + k] = v
        sd._metadata = real._metadata
        ckpt = {"model": sd, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.999)}]},
                "config": {"model": {"arch": "affectgpt"}}, "scaler": None, "epoch": 3}
        torch.save(ckpt, f"{OUT}/affectgpt.pth")
        plain = collections.OrderedDict([("w", torch.randn(2, 2)), ("nested", {"inner": torch.randn(3)})])
        torch.save(plain, f"{OUT}/plain.pth")
        torch.save({"state_dict": {"a.b": torch.ones(2, dtype=torch.float16)}}, f"{OUT}/statedict.pth")
        torch.save({"model": {"x": torch.ones(1)}}, f"{OUT}/legacy.pth", _use_new_zipfile_serialization=False)
        for fn, tensors in (("affectgpt.pth", sd), ("plain.pth", {"w": plain["w"], "nested.inner": plain["nested"]["inner"]}),
                            ("statedict.pth", {"a.b": torch.ones(2, dtype=torch.float16)})):
            loaded = torch.load(f"{OUT}/{fn}")
            root = loaded.get("model", loaded.get("state_dict", loaded)) if isinstance(loaded, dict) else loaded
            exp.append(f"ntensors {fn} {len(tensors)}")
            for name in tensors:
                t = root
                for part in ([name] if name in root else name.split(".")):
                    t = t[part]
                dt = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16", torch.float64: "f64",
                      torch.int64: "i64", torch.int32: "i32", torch.uint8: "u8", torch.bool: "bool"}[t.dtype]
                vals = t.detach().double().contiguous().view(-1).tolist()
                exp.append(" ".join(["tensor", fn, name, dt, str(t.dim())] + [str(s) for s in t.shape]
                                    + [str(len(vals))] + ["%.17g" % x for x in vals]))

    with open(f"{OUT}/expected.txt", "w", encoding="utf-8") as f:
        f.write("\n".join(exp) + "\n")
    print(f"wrote {OUT}/ ({len(exp)} expected lines)")


if __name__ == "__main__":
    main()
