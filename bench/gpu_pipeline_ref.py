#!/usr/bin/env python3
"""The HF transformers / PyTorch side of bench/gpu_pipeline.sh: AffectGPT end to end as the reference
runs it (per clip: the face crops and the WAV read on the CPU, resized and normalised, CLIP-L on the 8
images, HuBERT-L on the 8 clips of 2 s with the mean of the last 4 hidden states, the attention fusion,
the prompt embeddings with the 3 fused rows spliced in, generate(inputs_embeds=...) with the reference's
sampling), at the real shapes with random bf16 weights on the GPU (sdpa attention), on the synthetic
dataset bench_gpu_pipeline wrote (DIR/openface_face/cNNNN/cNNNN.npy, DIR/audio/cNNNN.wav).

    gpu_pipeline_ref.py bench DIR N_CLIPS BATCHES N_PROMPT N_GEN REPS OUT.json
        (a) one clip, stage by stage (median of REPS after a warm-up), (b) N_CLIPS clips with the
        LLM generating for BATCH clips at once (BATCHES: comma-separated), clips/s
    gpu_pipeline_ref.py table OURS.txt HF.json
        the side-by-side table (markdown) of bench_gpu_pipeline's RESULT lines and HF's figures

Preprocessing is done with numpy/torch (bilinear resize to 224, CLIP mean/std; Wav2Vec2's joint
normalisation), the closest cheap stand-in for the reference's cv2 + CLIPImageProcessor, so that the
comparison is about the models and the generation loop.
"""
import json
import os
import statistics
import sys
import time
import wave

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def sync():
    import torch
    torch.cuda.synchronize()


def now():
    sync()
    return time.perf_counter()


class Fusion:
    """AffectGPT's attention fusion (models/affectgpt.h) as torch Linear layers, random bf16 weights."""

    def __init__(self, torch, dv, da, d):
        nn = torch.nn
        with torch.device("cuda"):
            self.video_att, self.video_proj = nn.Linear(dv, 1), nn.Linear(dv, d)
            self.audio_att, self.audio_proj = nn.Linear(da, 1), nn.Linear(da, d)
            self.multi_video, self.multi_audio = nn.Linear(dv, da), nn.Linear(da, da)
            self.att_mlp, self.fc_att, self.multi_proj = nn.Linear(2 * da, da), nn.Linear(da, 2), nn.Linear(da, d)
        for m in (self.video_att, self.video_proj, self.audio_att, self.audio_proj, self.multi_video, self.multi_audio,
                  self.att_mlp, self.fc_att, self.multi_proj):
            m.to(torch.bfloat16)
        self.torch = torch

    def __call__(self, H, A):  # H [8, dv], A [8, da] -> [3, d]
        t = self.torch
        v = self.video_proj((self.video_att(H) * H).sum(0))
        a = self.audio_proj((self.audio_att(A) * A).sum(0))
        hv, ha = self.multi_video(H.mean(0)), self.multi_audio(A.mean(0))
        w = t.softmax(self.fc_att(self.att_mlp(t.cat([hv, ha]))).float(), 0).to(H.dtype)
        m = self.multi_proj(w[0] * hv + w[1] * ha)
        return t.stack([v, a, m])


def read_clip(torch, d, name):
    """The face crops and the audio of one clip, as the model inputs (on the GPU)."""
    import numpy as np
    F = torch.nn.functional
    faces = np.load(os.path.join(d, "openface_face", name, name + ".npy"))  # [n, 112, 112, 3] uint8
    n = faces.shape[0]
    idx = [min(i * n // 8, n - 1) for i in range(8)]
    x = torch.from_numpy(faces[idx]).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False) / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    px = ((x - mean) / std).to("cuda", torch.bfloat16)
    with wave.open(os.path.join(d, "audio", name + ".wav"), "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    sec = len(pcm) / 16000.0
    clips = np.zeros((8, 32000), np.float32)
    for i in range(8):  # start_i = i * max(D - 2, 0) / 7 s, zero-padded
        s = int(round(i * max(sec - 2, 0) / 7 * 16000))
        seg = pcm[s:s + 32000]
        clips[i, :len(seg)] = seg
    clips = (clips - clips.mean()) / np.sqrt(clips.var() + 1e-7)
    return px, torch.from_numpy(clips).to("cuda", torch.bfloat16)


def bench(d, n_clips, batches, n_prompt, n_gen, reps, out):
    import torch
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import gpu_ref
    import gpu_enc_ref
    from transformers import CLIPVisionModelWithProjection, HubertModel
    res = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    import transformers
    res["transformers"] = transformers.__version__
    t0 = time.perf_counter()
    clip = gpu_enc_ref.build(CLIPVisionModelWithProjection, gpu_enc_ref.clip_config(), torch.bfloat16, "sdpa")
    hub = gpu_enc_ref.build(HubertModel, gpu_enc_ref.hubert_config(), torch.bfloat16, "sdpa")
    llm = gpu_ref.build(torch, torch.bfloat16)
    fusion = Fusion(torch, 768, 1024, 3584)
    res["init_s"] = time.perf_counter() - t0
    emb = llm.get_input_embeddings()
    g = torch.Generator(device="cuda").manual_seed(5)
    ids = torch.randint(0, 152064, (n_prompt,), device="cuda", generator=g)
    gen_kw = dict(max_new_tokens=n_gen, min_new_tokens=n_gen, do_sample=True, temperature=1.0, top_k=20, top_p=0.9,
                  pad_token_id=0, eos_token_id=151645)

    def features(name, st=None):
        t = [now()]
        px, clips = read_clip(torch, d, name)
        t.append(now())
        H = clip(pixel_values=px).image_embeds
        t.append(now())
        o = hub(clips, output_hidden_states=True)
        A = torch.stack(o.hidden_states[-4:]).mean(0).mean(1)
        t.append(now())
        fused = fusion(H, A)
        t.append(now())
        e = emb(ids).clone()
        e[5], e[20], e[35] = fused[0], fused[1], fused[2]
        t.append(now())
        if st is not None:
            for k, key in enumerate(("preprocess", "clip", "hubert", "fusion", "prompt")):
                st.setdefault(key, []).append((t[k + 1] - t[k]) * 1e3)
        return e

    with torch.inference_mode():
        # (a) one clip: prefill timed alone (a forward of the prompt), decode = generate - prefill
        st = {}
        for r in range(reps + 1):
            e = features("c%04d" % r, st if r else None)
            t1 = now()
            mask = torch.ones(1, n_prompt, device="cuda", dtype=torch.long)
            try:
                llm(inputs_embeds=e[None], attention_mask=mask, logits_to_keep=1)
            except TypeError:
                llm(inputs_embeds=e[None], attention_mask=mask)
            t2 = now()
            out_ids = llm.generate(inputs_embeds=e[None],
                                   attention_mask=torch.ones(1, n_prompt, device="cuda", dtype=torch.long), **gen_kw)
            t3 = now()
            if out_ids.shape[-1] != n_gen:
                print("warning: HF generated", out_ids.shape[-1], "tokens")
            if r:
                st.setdefault("prefill", []).append((t2 - t1) * 1e3)
                st.setdefault("decode", []).append(((t3 - t2) - (t2 - t1)) * 1e3)
                st.setdefault("total", []).append(sum(v[-1] for k, v in st.items() if k in
                                                      ("preprocess", "clip", "hubert", "fusion", "prompt")) +
                                                  (t3 - t2) * 1e3)
        for k, v in st.items():
            res["e2e_%s_ms" % k] = statistics.median(v)
        # (b) the dataset: encoders per clip, the LLM on B clips at once
        for B in batches:
            def run(first, n):
                t = now()
                for c0 in range(first, first + n, B):
                    embs = [features("c%04d" % c) for c in range(c0, min(c0 + B, first + n))]
                    x = torch.stack(embs)
                    llm.generate(inputs_embeds=x, attention_mask=torch.ones(x.shape[:2], device="cuda",
                                                                            dtype=torch.long), **gen_kw)
                return now() - t
            run(n_clips, min(2 * B, 16))  # warm-up
            secs = run(0, n_clips)
            res["dataset_b%d_clips_per_s" % B] = n_clips / secs
    print(json.dumps(res, indent=1))
    with open(out, "w") as f:
        json.dump(res, f, indent=1)


def table(ours_path, hf_path):
    ours = {}
    for line in open(ours_path):
        p = line.split()
        if len(p) >= 3 and p[0] == "RESULT":
            ours[p[1]] = float(p[2])
    hf = json.load(open(hf_path)) if os.path.exists(hf_path) else {}
    print("| AffectGPT end to end (%s) | mer | HF transformers | mer speed-up |" % hf.get("device", "GPU"))
    print("|---|---|---|---|")
    for k in ("preprocess", "clip", "hubert", "fusion", "prompt", "prefill", "decode", "total"):
        key = "e2e_%s_ms" % k
        a, b = ours.get(key), hf.get(key)
        if a is None:
            continue
        print("| one clip: %s (ms) | %.2f | %s | %s |" % (k, a, "%.2f" % b if b is not None else "-",
                                                         "%.2fx" % (b / a) if b and a > 0 else "-"))
    for key in sorted(k for k in ours if k.startswith("dataset_b")):
        a, b = ours[key], hf.get(key)
        print("| %s (clips/s) | %.2f | %s | %s |" % (key[len("dataset_"):-len("_clips_per_s")], a,
                                                     "%.2f" % b if b is not None else "-",
                                                     "%.2fx" % (a / b) if b else "-"))


if __name__ == "__main__":
    a = sys.argv
    if len(a) == 9 and a[1] == "bench":
        bench(a[2], int(a[3]), [int(x) for x in a[4].split(",")], int(a[5]), int(a[6]), int(a[7]), a[8])
    elif len(a) == 4 and a[1] == "table":
        table(a[2], a[3])
    else:
        sys.exit(__doc__)
