#!/usr/bin/python3
"""Makes the reference outputs of the WAV / resampling / clip-sampling checks of tests/test_hubert.c with
the libraries AffectGPT uses: torchaudio (Debian's python3-torchaudio 0.13: torchaudio.load through sox,
torchaudio.functional.resample with its defaults), Python's fractions (pytorchvideo's
ConstantClipsPerVideoSampler arithmetic) and numpy (Wav2Vec2FeatureExtractor's normalisation). Run from
the repository root:

    /usr/bin/python3 scripts/make_wav_fixtures.py

Writes tests/fixtures/wav/: six short WAV files of different sample formats, rates and channel counts
(deterministic noise + tones), and expected.npz with, for each file X: X_raw (torchaudio.load, [C, :256]
float32) and X_16k (resampled to 16 kHz per channel, then the channel mean, as AffectGPT's loader);
clip_starts_N: the 8 start samples of the 2 s clips of a waveform of N samples at 16 kHz; norm_in,
norm_joint, norm_clip: numpy's (x - mean) / sqrt(var + 1e-7) over all clips / per clip;
odd_44101, odd_44101_16k: noise resampled 44101 -> 16000 Hz (no small filter bank).
"""
import os, struct
from fractions import Fraction
import numpy as np
import torch, torchaudio

OUT = "tests/fixtures/wav"
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(5)


def write_wav(path, x, rate, kind, extensible=False):
    """x: [N, C] float in [-1, 1). kind: u8 s16 s24 s32 f32 f64."""
    n, c = x.shape
    if kind == "u8": data, bits, tag = np.clip(np.round(x * 128 + 128), 0, 255).astype(np.uint8).tobytes(), 8, 1
    elif kind == "s16": data, bits, tag = np.clip(np.round(x * 32768), -32768, 32767).astype("<i2").tobytes(), 16, 1
    elif kind == "s24":
        v = np.clip(np.round(x * 8388608), -8388608, 8388607).astype("<i4").reshape(-1)
        data, bits, tag = b"".join(int(s).to_bytes(3, "little", signed=True) for s in v), 24, 1
    elif kind == "s32": data, bits, tag = np.clip(np.round(x * 2147483648.0), -2147483648, 2147483647).astype("<i4").tobytes(), 32, 1
    elif kind == "f32": data, bits, tag = x.astype("<f4").tobytes(), 32, 3
    elif kind == "f64": data, bits, tag = x.astype("<f8").tobytes(), 64, 3
    block = c * bits // 8
    if extensible:
        guid = struct.pack("<H", tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, c, rate, rate * block, block, bits, 22, bits, (1 << c) - 1) + guid
    else:
        fmt = struct.pack("<HHIIHH", tag, c, rate, rate * block, block, bits)
    extra = b"LIST" + struct.pack("<I", 5) + b"abcde\x00"  # an odd-sized chunk before the data (padded)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra + b"data" + struct.pack("<I", len(data)) + data
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(body)) + body)


files = [("a", 44100, 2, "s16", False, 0.12), ("b", 48000, 1, "s24", False, 0.1), ("c", 22050, 2, "f32", True, 0.15),
         ("d", 8000, 1, "u8", False, 0.2), ("e", 16000, 3, "s32", True, 0.1), ("f", 11025, 1, "f64", False, 0.2)]
exp = {}
for name, rate, ch, kind, ext, dur in files:
    n = int(rate * dur)
    t = np.arange(n) / rate
    x = np.stack([0.3 * np.sin(2 * np.pi * (440 + 300 * k) * t) + 0.1 * rng.standard_normal(n) for k in range(ch)], 1)
    x = np.clip(x, -0.99, 0.99)
    path = f"{OUT}/{name}_{kind}_{ch}ch_{rate}.wav"
    write_wav(path, x, rate, kind, ext)
    w, sr = torchaudio.load(path)
    assert sr == rate, (sr, rate)
    exp[f"{name}_raw"] = w[:, :256].numpy().astype(np.float32)  # the first 256 frames
    r = torchaudio.functional.resample(w, sr, 16000) if sr != 16000 else w
    exp[f"{name}_16k"] = r.mean(0).numpy().astype(np.float32)


def clip_starts(n, rate=16000, clip=2, k=8):  # pytorchvideo ConstantClipsPerVideoSampler + AffectGPT's slicing
    dur = n / rate
    max_start = Fraction(max(dur - clip, 0))
    uniform = Fraction(max_start, max(k - 1, 1))
    return [int(uniform * i * rate) for i in range(k)]


for n in [1000, 31999, 32000, 32001, 48000, 99999, 160000, 160017, 1234567]:
    exp[f"clip_starts_{n}"] = np.array(clip_starts(n), dtype=np.int64)
x = (rng.standard_normal((3, 1000)) * 0.2 + 0.05).astype(np.float32)
exp["norm_in"] = x
exp["norm_joint"] = ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)
exp["norm_clip"] = np.stack([(v - v.mean()) / np.sqrt(v.var() + 1e-7) for v in x]).astype(np.float32)
odd = (rng.standard_normal(3000) * 0.3).astype(np.float32)  # a rate pair without a small filter bank
exp["odd_44101"] = odd
exp["odd_44101_16k"] = torchaudio.functional.resample(torch.from_numpy(odd)[None], 44101, 16000)[0].numpy()
np.savez_compressed(f"{OUT}/expected.npz", **exp)
print("wrote", OUT, sorted(exp))
