#!/usr/bin/python3
"""Reference outputs of tests/test_features.c: AffectGPT's whole feature path (media -> preprocessing ->
encoder -> pooling) computed with the Python stack, for the tiny CLIP and HuBERT of tests/fixtures/models:
  - the encoders are the plain torch.nn modules of bench/ref_encoders.py (Debian's python3-torch) loaded
    with the fixtures' weights; before use they are checked against HF transformers' own outputs stored
    in the fixtures (expected.safetensors: image_embeds, hidden states, last_hidden_state) to 1e-5;
  - faces: cv2.resize(face, (224, 224)) of frames floor(i * n / 8) of a BGR uint8 [n, H, W, 3] array,
    then HF's CLIP processor (PIL bicubic to the model's 56 pixels, centre crop, /255, mean/std);
  - images: PIL.Image.open(...).convert("RGB") then the processor;
  - audio: torchaudio.load, resample to 16 kHz, channel mean, pytorchvideo's 8 clips of 2 s
    (Fraction arithmetic), zero padding, joint normalisation (x - mean) / sqrt(var + 1e-7), HuBERT,
    mean of hidden_states[-4:] as transformers 4 lists them (last entry layer-normed), mean over time.
Run from the repository root after scripts/make_preprocess_fixtures.py and make_wav_fixtures.py:

    /usr/bin/python3 scripts/make_features_fixtures.py

Writes tests/fixtures/features/faces.npy (5 BGR crops 60x52) and expected.npz (faces_visual [8, 16],
images_visual [2, 16], audio_a [8, 32], audio_d [8, 32], faces_layer1 [8, 32], audio_layer1 [8, 32])."""
import importlib.util, json, os, struct
from fractions import Fraction
import numpy as np
import torch, torchaudio, cv2
from PIL import Image

torch.set_num_threads(1)
spec = importlib.util.spec_from_file_location("ref", "bench/ref_encoders.py")
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)
OUT = "tests/fixtures/features"
os.makedirs(OUT, exist_ok=True)
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def load_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: torch.from_numpy(np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]],
                                              dtype=np.float32).reshape(v["shape"]).copy())
            for k, v in h.items() if k != "__metadata__"}


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


# --- CLIP -------------------------------------------------------------------------------------------
w = load_st("tests/fixtures/models/clip_tiny/model.safetensors")
clip = ref.ClipVision(d=32, layers=2, heads=4, ff=64, patch=14, image=56, proj=16).eval()
sd = {"patch.weight": w["vision_model.embeddings.patch_embedding.weight"], "cls": w["vision_model.embeddings.class_embedding"],
      "pos": w["vision_model.embeddings.position_embedding.weight"], "proj.weight": w["visual_projection.weight"]}
for a, b in [("pre", "pre_layrnorm"), ("post", "post_layernorm")]:
    for s in ("weight", "bias"):
        sd[f"{a}.{s}"] = w[f"vision_model.{b}.{s}"]
for i in range(2):
    p = f"vision_model.encoder.layers.{i}."
    for a, b in [("q", "self_attn.q_proj"), ("k", "self_attn.k_proj"), ("v", "self_attn.v_proj"), ("o", "self_attn.out_proj"),
                 ("ln1", "layer_norm1"), ("ln2", "layer_norm2"), ("fc1", "mlp.fc1"), ("fc2", "mlp.fc2")]:
        for s in ("weight", "bias"):
            sd[f"blocks.{i}.{a}.{s}"] = w[p + b + "." + s]
clip.load_state_dict(sd)
ex = load_st("tests/fixtures/models/clip_tiny/expected.safetensors")
with torch.no_grad():
    hs, emb = clip.hidden(ex["pixel_values"])
    errs = [rel(emb, ex["image_embeds"])] + [rel(hs[i], ex[f"hidden_states.{i}"]) for i in range(3)]
assert max(errs) < 1e-5, errs
print("plain-torch CLIP vs HF: max rel err", max(errs))


def processor(rgb, size=56):
    """HF CLIPImageProcessor (PIL path): resize shortest side, centre crop, rescale, normalize -> [3, S, S]."""
    img = Image.fromarray(rgb)
    w_, h_ = img.size
    short, long = (w_, h_) if w_ <= h_ else (h_, w_)
    nl = int(size * long / short)
    ow, oh = (size, nl) if w_ <= h_ else (nl, size)
    r = np.array(img.resize((ow, oh), resample=Image.BICUBIC, reducing_gap=None))
    t, l = (oh - size) // 2, (ow - size) // 2
    r = r[t:t + size, l:l + size]
    x = (r.astype(np.float64) * (1 / 255)).astype(np.float32)
    return torch.from_numpy(((x - MEAN) / STD).astype(np.float32).transpose(2, 0, 1).copy())


def clip_feats(imgs, layer=-1):
    with torch.no_grad():
        px = torch.stack([processor(im) for im in imgs])
        hs, emb = clip.hidden(px)
        return (emb if layer < 0 else hs[layer].mean(1)).numpy()


exp = {}
face = np.array(Image.open("tests/fixtures/preprocess/face112.png").convert("RGB"))
crop = np.array(Image.open("tests/fixtures/preprocess/crop.png").convert("RGB"))
small = [np.array(Image.fromarray(x).resize((60, 52), Image.BILINEAR)) for x in
         (face, crop[:100, :110], face[::-1], crop[20:, 30:], face[:, ::-1])]
faces = np.ascontiguousarray(np.stack(small)[..., ::-1]).astype(np.uint8)  # BGR, as OpenFace's npy
np.save(f"{OUT}/faces.npy", faces)
n = len(faces)
idx = list(np.arange(0, n, n / min(8, n)).astype(int))
idx += [idx[-1]] * (8 - len(idx))
sel = [cv2.resize(faces[i], (224, 224)) for i in idx]  # kept BGR: AffectGPT's quirk
exp["faces_visual"] = clip_feats(sel)
exp["faces_layer1"] = clip_feats(sel, 1)
imgs = [np.array(Image.open(f"tests/fixtures/preprocess/{f}").convert("RGB")) for f in ("crop.png", "face112.png")]
exp["images_visual"] = clip_feats(imgs)

# --- HuBERT -----------------------------------------------------------------------------------------
w = load_st("tests/fixtures/models/hubert_tiny/model.safetensors")
hub = ref.Hubert(d=32, layers=2, heads=4, ff=64, c=16, posk=16, posg=4).eval()
sd = {}
for i in range(7):
    for s in ("weight", "bias"):
        sd[f"convs.{i}.conv.{s}"] = w[f"feature_extractor.conv_layers.{i}.conv.{s}"]
        sd[f"convs.{i}.ln.{s}"] = w[f"feature_extractor.conv_layers.{i}.layer_norm.{s}"]
for s in ("weight", "bias"):
    sd[f"fp_ln.{s}"] = w[f"feature_projection.layer_norm.{s}"]
    sd[f"fp.{s}"] = w[f"feature_projection.projection.{s}"]
    sd[f"ln.{s}"] = w[f"encoder.layer_norm.{s}"]
g = w["encoder.pos_conv_embed.conv.parametrizations.weight.original0"]
v = w["encoder.pos_conv_embed.conv.parametrizations.weight.original1"]
sd["pos.weight"] = torch._weight_norm(v, g, 2)
sd["pos.bias"] = w["encoder.pos_conv_embed.conv.bias"]
for i in range(2):
    p = f"encoder.layers.{i}."
    for a, b in [("q", "attention.q_proj"), ("k", "attention.k_proj"), ("v", "attention.v_proj"), ("o", "attention.out_proj"),
                 ("ln1", "layer_norm"), ("ln2", "final_layer_norm"), ("fc1", "feed_forward.intermediate_dense"),
                 ("fc2", "feed_forward.output_dense")]:
        for s in ("weight", "bias"):
            sd[f"blocks.{i}.{a}.{s}"] = w[p + b + "." + s]
hub.load_state_dict(sd)
ex = load_st("tests/fixtures/models/hubert_tiny/expected.safetensors")
with torch.no_grad():
    feat, hs, last = hub.hidden(ex["input_values"])
    errs = [rel(feat, ex["extract_features"]), rel(last, ex["last_hidden_state"])] + \
           [rel(hs[i], ex[f"hidden_states.{i}"]) for i in range(3)]
assert max(errs) < 1e-5, errs
print("plain-torch HuBERT vs HF: max rel err", max(errs))


def clips_of(wav):  # [N] 16 kHz -> [8, 32000]
    dur = wav.shape[0] / 16000
    uni = Fraction(Fraction(max(dur - 2, 0)), 7)
    out = torch.zeros(8, 32000)
    for i in range(8):
        s = int(uni * i * 16000)
        c = wav[s:s + 32000]
        out[i, :c.shape[0]] = c
    return out


def audio_feats(path, layer=-1):
    x, sr = torchaudio.load(path)
    if sr != 16000:
        x = torchaudio.functional.resample(x, sr, 16000)
    c = clips_of(x.mean(0)).numpy()
    c = (c - c.mean()) / np.sqrt(c.var() + 1e-7)  # jointly over the 8 clips
    with torch.no_grad():
        if layer < 0:
            return hub(torch.from_numpy(c.astype(np.float32))).numpy()
        _, hs, last = hub.hidden(torch.from_numpy(c.astype(np.float32)))
        return (last if layer == len(hs) - 1 else hs[layer]).mean(1).numpy()


exp["audio_a"] = audio_feats("tests/fixtures/wav/a_s16_2ch_44100.wav")
exp["audio_d"] = audio_feats("tests/fixtures/wav/d_u8_1ch_8000.wav")
exp["audio_layer1"] = audio_feats("tests/fixtures/wav/a_s16_2ch_44100.wav", 1)
np.savez_compressed(f"{OUT}/expected.npz", **exp)
print("wrote", OUT, {k: v.shape for k, v in exp.items()})
