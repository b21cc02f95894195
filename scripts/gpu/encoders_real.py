#!/usr/bin/env python3
"""Real-shape parity of mer's encoders with HF transformers (issue 5): random-weight
CLIPVisionModelWithProjection with openai/clip-vit-large-patch14's vision config and HubertModel with
TencentGameMate/chinese-hubert-large's config (hyper-parameters from their public config.json files),
saved as HF folders; HF features computed in float32 (TF32 off) on the GPU; then mer's CPU build runs
the same weights (bench_encoder_parity) and the relative errors are printed.
Usage: python3 scripts/gpu/encoders_real.py WORKDIR BUILD"""
import os, subprocess, sys, time
import numpy as np
import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, HubertConfig, HubertModel

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
W, BUILD = sys.argv[1], sys.argv[2]
os.makedirs(W, exist_ok=True)
dev = "cuda" if torch.cuda.is_available() else "cpu"
torch.manual_seed(0)


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


# CLIP ViT-L/14 vision tower (openai/clip-vit-large-patch14 config.json, vision_config + projection_dim)
cc = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                      image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5)
clip = CLIPVisionModelWithProjection(cc).eval()
clip.save_pretrained(os.path.join(W, "clipL"))
px = torch.randn(8, 3, 224, 224)
np.save(os.path.join(W, "px.npy"), px.numpy())
with torch.no_grad():
    t = time.time(); ref = clip.to(dev)(pixel_values=px.to(dev)).image_embeds.float().cpu().numpy(); torch.cuda.synchronize()
print("HF CLIP-L f32 on", dev, "8 images %.1f ms" % ((time.time() - t) * 1e3))

# chinese-hubert-large (its config.json: 24 layers, 1024, conv 512x7, pos conv 128/16, stable layer norm)
hc = HubertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                  conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
                  feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True, num_conv_pos_embeddings=128,
                  num_conv_pos_embedding_groups=16, hidden_act="gelu", feat_extract_activation="gelu", layer_norm_eps=1e-5)
hub = HubertModel(hc).eval()
hub.save_pretrained(os.path.join(W, "hubertL"))
clips = torch.randn(8, 32000) * 0.2
x = (clips - clips.mean()) / torch.sqrt(clips.var(unbiased=False) + 1e-7)
np.save(os.path.join(W, "clips.npy"), x.numpy())
with torch.no_grad():
    o = hub.to(dev)(x.to(dev), output_hidden_states=True)
    hs = [h.float().cpu() for h in o.hidden_states]
    v5 = torch.stack(hs[-4:]).mean(0).mean(1).numpy()
    v4 = torch.stack(hs[-4:-1] + [o.last_hidden_state.float().cpu()]).mean(0).mean(1).numpy()  # transformers 4's list

res = {}
for args, key, refv in [(["clip", os.path.join(W, "clipL"), os.path.join(W, "px.npy"), os.path.join(W, "ours_clip.npy")], "clip", ref),
                        (["hubert", os.path.join(W, "hubertL"), os.path.join(W, "clips.npy"), os.path.join(W, "ours_h5.npy"), "1"], "hubert_v5", v5),
                        (["hubert", os.path.join(W, "hubertL"), os.path.join(W, "clips.npy"), os.path.join(W, "ours_h4.npy"), "0"], "hubert_v4", v4)]:
    r = subprocess.run([os.path.join(BUILD, "bench", "bench_encoder_parity")] + args, capture_output=True, text=True)
    print(r.stdout.strip(), r.stderr.strip())
    ours = np.load(args[3])
    res[key] = rel(ours, refv)
    print(f"{key}: shape {ours.shape} max-abs-err / max-abs-ref = {res[key]:.3e}")
print("PARITY", " ".join(f"{k}={v:.3e}" for k, v in res.items()), "bar 1e-3:", "PASS" if max(res.values()) < 1e-3 else "FAIL")
