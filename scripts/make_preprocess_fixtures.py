#!/usr/bin/python3
"""Makes the reference outputs of tests/test_preprocess.c with the libraries AffectGPT runs: Debian's
python3-pil (Pillow 9.4: the CLIP processor's bicubic resize), python3-opencv (cv2.resize INTER_LINEAR on
face crops) and numpy. Run from the repository root with Debian's /usr/bin/python3 after
scripts/deps.sh (which installs those and the npm package @vladmandic/face-api, whose demo/ photographs
are the real JPEGs used here):

    /usr/bin/python3 scripts/make_preprocess_fixtures.py

Writes tests/fixtures/preprocess/:
  sampleN_clip224.png   PIL output of HF CLIPImageProcessor's resize (shortest side 224, BICUBIC,
                        reducing_gap None) + center crop 224 of demo/sampleN.jpg as Pillow decodes it
                        (N = 1..3; the JPEGs themselves stay in the npm package, not in git)
  crop.png              a 160x120 crop of sample1.jpg (lossless, the input of the exact-resize tests)
  face112.png           a 112x112 crop of sample2.jpg (the size of an OpenFace face crop)
  pil_WxH.png           Image.resize((W, H), BICUBIC) of crop.png for several sizes
  cv_face112_224.png    cv2.resize(face112, (224, 224)) (INTER_LINEAR)
  cv_crop_97x61.png     cv2.resize(crop, (97, 61))
  cv_half_60x45.png     cv2.resize(crop[:90, :120], (60, 45)) (OpenCV's exact-halving area path)
  expected.npz          norm_lut: [3, 256] float32 of (float32(u8 * (1/255)) - mean) / std as HF computes
                        it (rescale in float64 cast to float32, normalize in float32);
                        frame_idx_N: AffectGPT's np.arange(0, N, N / min(8, N)).astype(int) padded to 8.
"""
import os, sys
import numpy as np
from PIL import Image
import cv2

OUT = "tests/fixtures/preprocess"
DEMO = "models/npm/face-api/node_modules/@vladmandic/face-api/demo"
os.makedirs(OUT, exist_ok=True)


def hf_clip_resize_crop(img, size=224, crop=224):
    """transformers' CLIPImageProcessor (slow, PIL) resize + center_crop on a PIL RGB image."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    ow, oh = (new_short, new_long) if w <= h else (new_long, new_short)
    r = np.array(img.resize((ow, oh), resample=Image.BICUBIC, reducing_gap=None))
    top, left = (oh - crop) // 2, (ow - crop) // 2
    return r[top:top + crop, left:left + crop]


if not os.path.isdir(DEMO):
    sys.exit(f"{DEMO} is missing: run scripts/deps.sh first")
for n in range(1, 4):
    img = Image.open(f"{DEMO}/sample{n}.jpg").convert("RGB")
    Image.fromarray(hf_clip_resize_crop(img)).save(f"{OUT}/sample{n}_clip224.png", optimize=True)

s1 = np.array(Image.open(f"{DEMO}/sample1.jpg").convert("RGB"))
crop = s1[440:560, 880:1040].copy()  # 160 x 120
Image.fromarray(crop).save(f"{OUT}/crop.png", optimize=True)
s2 = np.array(Image.open(f"{DEMO}/sample2.jpg").convert("RGB"))
face = s2[300:412, 800:912].copy()  # 112 x 112
Image.fromarray(face).save(f"{OUT}/face112.png", optimize=True)

exp = {}
cimg = Image.fromarray(crop)
png = lambda a, name: Image.fromarray(a).save(f"{OUT}/{name}.png", optimize=True)
for (w, h) in [(224, 168), (97, 61), (13, 9), (200, 75), (37, 151)]:
    png(np.array(cimg.resize((w, h), resample=Image.BICUBIC, reducing_gap=None)), f"pil_{w}x{h}")
png(cv2.resize(face, (224, 224)), "cv_face112_224")
png(cv2.resize(crop, (97, 61)), "cv_crop_97x61")
png(cv2.resize(np.ascontiguousarray(crop[:90, :120]), (60, 45)), "cv_half_60x45")
mean = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
std = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
u8 = np.arange(256, dtype=np.uint8)
lut = np.zeros((3, 256), dtype=np.float32)
for c in range(3):
    x = (u8.astype(np.float64) * (1 / 255)).astype(np.float32)
    lut[c] = (x - mean[c]) / std[c]
exp["norm_lut"] = lut
for n in [1, 3, 7, 8, 9, 10, 13, 25, 31, 100, 333, 1001]:
    k = min(8, n)
    idx = list(np.arange(0, n, n / k).astype(int))
    idx = idx + [idx[-1]] * (8 - len(idx))
    exp[f"frame_idx_{n}"] = np.array(idx[:8], dtype=np.int64)
np.savez_compressed(f"{OUT}/expected.npz", **exp)
print("wrote", OUT, sorted(exp))
