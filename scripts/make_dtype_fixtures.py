#!/usr/bin/python3
"""make_dtype_fixtures.py - writes tests/fixtures/dtype/f32_f16_bf16.txt: f32 values (hex bits) with
their float16 bits as numpy rounds them (astype(np.float16), round to nearest even) and their bfloat16
bits derived independently in float64 (nearest representable bfloat16, ties to the even mantissa,
overflow to infinity as IEEE rounding does). NaNs are left out (their payloads are a separate check in
the test). Deterministic: fixed seed. Run from the repository root: /usr/bin/python3 scripts/make_dtype_fixtures.py
"""
import os
import numpy as np

rng = np.random.default_rng(20250611)
vals = []
# random bit patterns over the whole exponent range, and random values near the f16 range ends
bits = rng.integers(0, 2**32, size=900, dtype=np.uint64).astype(np.uint32)
vals += [int(b) for b in bits if (b & 0x7F800000) != 0x7F800000]
for lo, hi in [(-70000.0, 70000.0), (-1.0, 1.0), (-1e-4, 1e-4), (-1e-7, 1e-7)]:
    vals += [int(v) for v in rng.uniform(lo, hi, size=120).astype(np.float32).view(np.uint32)]
# exact halfway cases for f16 (mantissa bit 12 set, lower bits 0) and for bf16 (bit 15 set, lower 0)
for e in [100, 103, 110, 112, 113, 120, 127, 140, 142, 143]:
    for m in [0x001000, 0x003000, 0x7FF000, 0x000000, 0x001001, 0x000FFF, 0x008000, 0x018000, 0x7F8000]:
        for s in [0, 1]:
            vals.append((s << 31) | (e << 23) | m)
# boundaries: f16 max, overflow threshold, smallest subnormal/normal, infinities, zeros
for f in [65504.0, 65519.0, 65520.0, 65536.0, 2.0**-24, 2.0**-25, 1.5 * 2.0**-25, 2.0**-14, 3.0e38,
          3.4028235e38, np.inf, -np.inf, 0.0, -0.0, 1.0, -2.5]:
    vals.append(int(np.array([f], dtype=np.float32).view(np.uint32)[0]))

u = np.array(vals, dtype=np.uint32)
f = u.view(np.float32)
with np.errstate(over="ignore"):
    h = f.astype(np.float16).view(np.uint16)

def bf16_ref(x):
    """Nearest bfloat16 by exhaustive comparison in float64 (independent of the bit trick)."""
    x64 = float(x)
    if np.isinf(x64):
        return 0x7F80 if x64 > 0 else 0xFF80
    b = int(np.array([x], dtype=np.float32).view(np.uint32)[0])
    lo = b >> 16                       # truncation toward zero
    hi = lo + 1                        # next bfloat16 away from zero
    def val(t):
        return float(np.array([t << 16], dtype=np.uint32).view(np.float32)[0]) if (t & 0x7F80) != 0x7F80 or (t & 0x7F) == 0 else None
    vlo = val(lo)
    vhi = val(hi)
    if vhi is None or np.isinf(vhi):   # next step is infinity: IEEE overflow threshold is halfway to 2^128
        big = 2.0 ** 128
        vhi = big if x64 > 0 else -big
    dlo, dhi = abs(x64 - vlo), abs(vhi - x64)
    if dlo < dhi: return lo
    if dhi < dlo: return hi & 0xFFFF
    return lo if (lo & 1) == 0 else hi & 0xFFFF

os.makedirs("tests/fixtures/dtype", exist_ok=True)
with open("tests/fixtures/dtype/f32_f16_bf16.txt", "w") as out:
    out.write("# f32_bits f16_bits(numpy astype) bf16_bits(nearest, ties even; float64 derivation)\n")
    for i in range(len(u)):
        out.write("%08x %04x %04x\n" % (int(u[i]), int(h[i]), bf16_ref(f[i])))
print(len(u), "values")
