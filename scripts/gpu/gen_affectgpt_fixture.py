#!/usr/bin/env python3
"""End-to-end reference for a tiny random-weight AffectGPT (spec §4), written on HF modules:
tiny CLIP vision + tiny HuBERT (the fixtures in tests/fixtures/models/clip_tiny, hubert_tiny), a tiny
Qwen2 with a byte-level BPE tokenizer and AffectGPT's placeholder special tokens, the fusion layers,
and LoRA. Saves the LLM dir, an AffectGPT-style checkpoint .pth with the real key names, and the
expected features, fused embeddings, prompt ids and greedy tokens for the face and frame configs.

Inputs are procedural (the C test computes the same integers/floats), so nothing large is stored:
  frames[t, y, x, c] = (7x + 13y + 29t + 71c + (x*y) % 37) % 256      uint8 [8, 224, 224, 3] RGB
  faces[t, y, x, c]  = (11x + 3y + 41t + 97c + (x*y) % 23) % 256      uint8 [5, 112, 112, 3] BGR
  wav[i] = float32(0.5 sin(0.01 i (1 + 0.1 (i % 7))) + ((1103515245 i + 12345) % 65536) / 65536 * 0.1 - 0.05)
           for i < 52800 (3.3 s at 16 kHz)

Usage (GPU machine, repo root): python3 scripts/gpu/gen_affectgpt_fixture.py OUTDIR
"""
import json, os, sys
from fractions import Fraction
import numpy as np
import torch
import torch.nn as nn

torch.manual_seed(99)
OUT = sys.argv[1]
FX = "tests/fixtures/models"
os.makedirs(OUT, exist_ok=True)
from safetensors.torch import save_file as _save


def save_file(t, path):
    _save({k: v.detach().clone().contiguous() for k, v in t.items()}, path)


# --- procedural inputs ----------------------------------------------------------------------------
def frames():
    t, y, x, c = np.meshgrid(np.arange(8), np.arange(224), np.arange(224), np.arange(3), indexing="ij")
    return ((7 * x + 13 * y + 29 * t + 71 * c + (x * y) % 37) % 256).astype(np.uint8)


def faces():
    t, y, x, c = np.meshgrid(np.arange(5), np.arange(112), np.arange(112), np.arange(3), indexing="ij")
    return ((11 * x + 3 * y + 41 * t + 97 * c + (x * y) % 23) % 256).astype(np.uint8)


def wav():
    i = np.arange(52800, dtype=np.int64)
    v = 0.5 * np.sin(0.01 * i * (1 + 0.1 * (i % 7))) + ((1103515245 * i + 12345) % 65536) / 65536.0 * 0.1 - 0.05
    return v.astype(np.float32)


# --- tokenizer: byte-level BPE in Qwen2's tokenizer.json layout -----------------------------------
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<ImageHere>", "<AudioHere>", "<FrameHere>", "<FaceHere>", "<MultiHere>"]


def make_tokenizer(corpus, n_merges=40):
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    # words as the pre-tokenizer would roughly split them; merges learnt greedily by pair frequency
    import re
    words = [[b2u[b] for b in w.encode()] for w in re.findall(r" ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]+|\s+", corpus)]
    merges = []
    for _ in range(n_merges):
        cnt = {}
        for w in words:
            for a, b in zip(w, w[1:]):
                cnt[(a, b)] = cnt.get((a, b), 0) + 1
        if not cnt:
            break
        (a, b), _n = max(cnt.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append([a, b])
        vocab[a + b] = len(vocab)
        nw = []
        for w in words:
            o, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    o.append(a + b); i += 2
                else:
                    o.append(w[i]); i += 1
            nw.append(o)
        words = nw
    base = len(vocab)
    added = [{"id": base + k, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for k, s in enumerate(SPECIALS)]
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
           "normalizer": {"type": "NFC"},
           "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
               {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
                "behavior": "Isolated", "invert": False}, bl]},
           "post_processor": bl, "decoder": bl,
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                     "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                     "vocab": vocab, "merges": merges}}
    return tok, base + len(SPECIALS)


def prompt(face_or_frame, subtitle, q):
    v = ("Meanwhile, we uniformly sample raw frames from the video and extract faces from these frames: <Video><FaceHere></Video>. "
         if face_or_frame == "face" else "Meanwhile, we uniformly sample raw frames from the video: <Video><FrameHere></Video>. ")
    return ("###Human: The audio and video merged info is: <Multi><MultiHere></Multi>. The audio content is as follows: "
            "<Audio><AudioHere></Audio>. " + v + f"The subtitle of this video is: <Subtitle>{subtitle}</Subtitle>. Now, please "
            f"answer my question based on all the provided information. {q} ###Assistant: ")


SUB = "Look, Ouyang is getting married too. I'm so happy for him!"
Q = "Please recognize all possible emotional states of the character."
corpus = prompt("face", SUB, Q) + prompt("frame", SUB, Q) + " The character's emotional state is happy, sad, angry, surprised."
tok_json, vocab_size = make_tokenizer(corpus)
llm_dir = os.path.join(OUT, "llm")
os.makedirs(llm_dir, exist_ok=True)
with open(os.path.join(llm_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
    json.dump(tok_json, f, ensure_ascii=False)
from tokenizers import Tokenizer
tk = Tokenizer.from_file(os.path.join(llm_dir, "tokenizer.json"))
sp_id = {s: tk.token_to_id(s) for s in SPECIALS}

# --- tiny Qwen2 + LoRA ----------------------------------------------------------------------------
from transformers import Qwen2Config, Qwen2ForCausalLM, GenerationConfig, CLIPVisionModelWithProjection, HubertModel
cfg = Qwen2Config(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=512, rope_theta=10000.0, rms_norm_eps=1e-6,
                  tie_word_embeddings=False, initializer_range=0.2, use_sliding_window=False, attn_implementation="eager",
                  bos_token_id=sp_id["<|im_start|>"], eos_token_id=sp_id["<|im_end|>"])
llm = Qwen2ForCausalLM(cfg).eval()
with torch.no_grad():
    for n, p in llm.named_parameters():
        if n.endswith(".bias") or "norm" in n:
            p.add_(torch.randn_like(p) * 0.1)
llm.save_pretrained(llm_dir, safe_serialization=True)

ckpt = {}
r, alpha = 4, 8
targets = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj", "mlp.up_proj"]
with torch.no_grad():
    for i, layer in enumerate(llm.model.layers):
        for t in targets:
            mod = layer.get_submodule(t)
            A = torch.randn(r, mod.in_features) * 0.3
            B = torch.randn(mod.out_features, r) * 0.3
            mod.weight.add_((alpha / r) * (B @ A))  # merged: what PEFT computes in eval mode
            pre = f"llama_model.base_model.model.model.layers.{i}.{t}"
            ckpt[pre + ".lora_A.default.weight"] = A
            ckpt[pre + ".lora_B.default.weight"] = B

# --- encoders (the committed tiny fixtures) -------------------------------------------------------
clip = CLIPVisionModelWithProjection.from_pretrained(os.path.join(FX, "clip_tiny")).eval()
hub = HubertModel.from_pretrained(os.path.join(FX, "hubert_tiny")).eval()
Dv, Da, D = clip.config.projection_dim, hub.config.hidden_size, cfg.hidden_size
Dm, Dh = Da, Da

# --- fusion layers with AffectGPT's names ---------------------------------------------------------
fusion = nn.ModuleDict({
    "affectgpt_proj": nn.Linear(Dv, D), "video_attention_mlp": nn.Linear(Dv, 1),
    "audio_llama_proj": nn.Linear(Da, D), "audio_attention_mlp": nn.Linear(Da, 1),
    "multi_video_embs": nn.Linear(Dv, Dm), "multi_audio_embs": nn.Linear(Da, Dm),
    "attention_mlp": nn.Linear(2 * Dm, Dh), "fc_att": nn.Linear(Dh, 2), "multi_llama_proj": nn.Linear(Dm, D),
    "image_llama_proj": nn.Linear(Dv, D),  # trained but unused at inference (spec §4.3)
})
for k, v in fusion.state_dict().items():
    ckpt[k] = v
torch.save({"model": ckpt, "optimizer": {}, "config": {"lora_r": r, "lora_alpha": alpha}, "epoch": 35},
           os.path.join(OUT, "checkpoint_000035_loss_0.000.pth"))


# --- preprocessing (reference semantics: PIL bicubic via the slow CLIP processor; cv2 bilinear) ---
def clip_pixels(imgs):
    from transformers import CLIPImageProcessor
    try:
        proc = CLIPImageProcessor(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}, use_fast=False)
    except TypeError:
        proc = CLIPImageProcessor(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    print("processor:", type(proc).__name__)
    from PIL import Image
    return proc(images=[Image.fromarray(im) for im in imgs], return_tensors="pt")["pixel_values"]


def cv2_resize_2x(face):  # cv2.resize(face, (224, 224)) INTER_LINEAR for an exact 2x upscale of uint8
    try:
        import cv2
        return cv2.resize(face, (224, 224))
    except ImportError:
        pass
    src = face.astype(np.int64)
    H, W = src.shape[:2]
    def axis(n):
        o = np.arange(2 * n)
        f = (o + 0.5) / 2 - 0.5
        i0 = np.floor(f).astype(int)
        w1 = f - i0
        i1 = np.clip(i0 + 1, 0, n - 1)
        i0 = np.clip(i0, 0, n - 1)
        c1 = np.round(w1 * 2048).astype(np.int64)
        return i0, i1, 2048 - c1, c1
    y0, y1, wy0, wy1 = axis(H)
    x0, x1, wx0, wx1 = axis(W)
    rows = src[:, x0] * wx0[None, :, None] + src[:, x1] * wx1[None, :, None]
    out = rows[y0] * wy0[:, None, None] + rows[y1] * wy1[:, None, None]
    return ((out + (1 << 21)) >> 22).clip(0, 255).astype(np.uint8)


def idx8(vlen):
    k = min(8, vlen)
    i = np.arange(0, vlen, vlen / k).astype(int).tolist()
    return i + [i[-1]] * (8 - len(i))


def audio_clips(w):
    sr = 16000
    if len(w) < 2 * sr:
        w = np.concatenate([w, np.zeros(2 * sr - len(w), np.float32)])
    D_ = len(w) / sr
    u = Fraction(max(Fraction(D_) - 2, 0), 7)
    return np.stack([w[int(u * i * sr): int(u * i * sr) + 2 * sr] for i in range(8)])


@torch.no_grad()
def run(face_or_frame):
    if face_or_frame == "face":
        fc = faces()
        imgs = [cv2_resize_2x(fc[i]) for i in idx8(len(fc))]  # BGR kept (quirk)
    else:
        fr = frames()
        imgs = [fr[i] for i in idx8(len(fr))]
    px = clip_pixels(imgs)
    H = clip(pixel_values=px).image_embeds  # [8, Dv]
    clips = torch.from_numpy(audio_clips(wav()))
    x = (clips - clips.mean()) / torch.sqrt(clips.var(unbiased=False) + 1e-7)  # joint normalisation quirk
    hs = hub(x, output_hidden_states=True).hidden_states
    A = torch.stack(hs[-4:]).mean(0).mean(1)  # [8, Da]
    f = fusion
    v = (f["video_attention_mlp"](H) * H).sum(0)
    frame_llm = f["affectgpt_proj"](v)
    u = (f["audio_attention_mlp"](A) * A).sum(0)
    audio_llm = f["audio_llama_proj"](u)
    hv = f["multi_video_embs"](H.mean(0))
    ha = f["multi_audio_embs"](A.mean(0))
    w = f["fc_att"](f["attention_mlp"](torch.cat([hv, ha])))
    multi_llm = f["multi_llama_proj"](w[0] * hv + w[1] * ha)
    text = prompt(face_or_frame, SUB, Q)
    ids = tk.encode(text, add_special_tokens=False).ids
    ids_t = torch.tensor(ids)
    emb_ids = ids_t.clone()
    ph = {sp_id["<MultiHere>"]: multi_llm, sp_id["<AudioHere>"]: audio_llm,
          sp_id["<FaceHere>" if face_or_frame == "face" else "<FrameHere>"]: frame_llm}
    for k in ph:
        emb_ids[ids_t == k] = 0
    emb = llm.get_input_embeddings()(emb_ids)
    for k, vec in ph.items():
        emb[ids_t == k] = vec
    logits = llm(inputs_embeds=emb[None]).logits[0]
    gc = GenerationConfig(max_new_tokens=24, do_sample=False, eos_token_id=None, pad_token_id=0, bos_token_id=None)
    gen = llm.generate(inputs_embeds=emb[None], attention_mask=torch.ones(1, len(ids), dtype=torch.long), generation_config=gc)[0]
    save_file({"pixel_values": px, "visual_feats": H, "audio_feats": A, "frame_llm": frame_llm,
               "audio_llm": audio_llm, "multi_llm": multi_llm, "prompt_ids": ids_t.to(torch.int32), "embeds": emb,
               "last_logits": logits[-1], "greedy": gen.to(torch.int32)},
              os.path.join(OUT, f"expected_{face_or_frame}.safetensors"))
    print(face_or_frame, "prompt tokens", len(ids), "greedy", gen.tolist()[:8], "decoded:", repr(tk.decode(gen.tolist())[:60]))


run("face")
run("frame")
with open(os.path.join(OUT, "README"), "w") as f:
    f.write("tiny AffectGPT reference made by scripts/gpu/gen_affectgpt_fixture.py; CLIP/HuBERT from ../clip_tiny, ../hubert_tiny\n")
print("done")
