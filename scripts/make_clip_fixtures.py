#!/usr/bin/env python3
"""Writes tests/fixtures/pipeline/clips.json: frame indices and audio clip starts computed with the
reference's own formulas (spec §4.2): numpy arange for frames; pytorchvideo ConstantClipsPerVideoSampler
arithmetic (Fractions over a float duration) for clips."""
import json
from fractions import Fraction
import numpy as np

def frames(vlen, n=8):
    k = min(n, vlen)
    idx = np.arange(0, vlen, vlen / k).astype(int).tolist()
    while len(idx) < n:
        idx.append(idx[-1])
    return idx

def clips(nsamp, sr=16000, dur=2, n=8):
    nsamp = max(nsamp, dur * sr)
    D = nsamp / sr  # float, as waveform.shape[1] / sample_rate
    max_start = max(Fraction(D) - dur, 0)
    uniform = Fraction(max_start, n - 1)
    return [int(uniform * i * sr) for i in range(n)]

out = {"frames": [{"vlen": v, "idx": frames(v)} for v in [1, 2, 3, 7, 8, 9, 10, 13, 75, 99, 100, 101, 250, 1001, 30000]],
       "clips": [{"n": s, "starts": clips(s)} for s in [100, 31999, 32000, 32001, 40001, 48000, 52345, 160000, 160007,
                                                         161803, 999999, 16000 * 37 + 3, 7 * 16000 + 5]]}
json.dump(out, open("tests/fixtures/pipeline/clips.json", "w"), indent=0)
print("ok")
