#!/usr/bin/env python3
"""HF transformers side of the device encoders' benchmark (bench/gpu_enc.sh).

  gpu_enc_ref.py bench OUT.json   times HF CLIPVisionModelWithProjection (openai/clip-vit-large-patch14's
                                  vision config, random init, bf16, sdpa) on 8 frames of 224x224 (image
                                  features) and HubertModel (TencentGameMate/chinese-hubert-large's
                                  config, bf16) on 8 clips of 32000 samples (all hidden states, and the
                                  AffectGPT feature: mean of the last 4, then over time); inputs on the
                                  GPU, torch.cuda.synchronize around each call, median of 30 after warm-up
  gpu_enc_ref.py export DIR       the same architectures in float32 with random weights saved as HF
                                  folders DIR/clipL and DIR/hubertL, random inputs DIR/px.npy (4 images)
                                  and DIR/clips.npy (4 normalised clips of 32000), and HF's float32 outputs
                                  (TF32 off): DIR/hf_clip.npy (image_embeds), DIR/hf_h5.npy (mean of
                                  hidden_states[-4:] over time, transformers >= 5 hidden states)
"""
import json, os, sys, time
import numpy as np
import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, HubertConfig, HubertModel

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
DEV = "cuda"


def clip_config():
    return CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                            image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu",
                            layer_norm_eps=1e-5)


def hubert_config():
    return HubertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                        conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
                        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
                        num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16, hidden_act="gelu",
                        feat_extract_activation="gelu", layer_norm_eps=1e-5)


def build(cls, cfg, dtype, attn):
    try:
        cfg._attn_implementation = attn
    except Exception as ex:  # the attribute's spelling moved between versions: keep the default
        print("attn_implementation not set:", ex)
    with torch.device(DEV):
        m = cls(cfg)
    return m.to(dtype).eval()


def timed(fn, runs=30, warm=5):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    t = []
    for _ in range(runs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        t.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(t))


def bench(out):
    torch.manual_seed(0)
    res = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    import transformers
    res["transformers"] = transformers.__version__
    clip = build(CLIPVisionModelWithProjection, clip_config(), torch.bfloat16, "sdpa")
    px = torch.randn(8, 3, 224, 224, device=DEV, dtype=torch.bfloat16)
    with torch.inference_mode():
        res["hf_clip_l_8frames_ms"] = timed(lambda: clip(pixel_values=px).image_embeds)
        res["hf_clip_l_1frame_ms"] = timed(lambda: clip(pixel_values=px[:1]).image_embeds)
    del clip
    torch.cuda.empty_cache()
    hub = build(HubertModel, hubert_config(), torch.bfloat16, "sdpa")
    x = torch.randn(8, 32000, device=DEV, dtype=torch.bfloat16)

    def hub_feat():
        o = hub(x, output_hidden_states=True)
        return torch.stack(o.hidden_states[-4:]).mean(0).mean(1)

    with torch.inference_mode():
        res["hf_hubert_l_8x2s_ms"] = timed(hub_feat)
    print(json.dumps(res, indent=1))
    with open(out, "w") as f:
        json.dump(res, f, indent=1)


def export(d):
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(1)
    clip = build(CLIPVisionModelWithProjection, clip_config(), torch.float32, "eager")
    clip.save_pretrained(os.path.join(d, "clipL"))
    px = torch.randn(4, 3, 224, 224)
    np.save(os.path.join(d, "px.npy"), px.numpy())
    with torch.inference_mode():
        np.save(os.path.join(d, "hf_clip.npy"), clip(pixel_values=px.to(DEV)).image_embeds.float().cpu().numpy())
    del clip
    hub = build(HubertModel, hubert_config(), torch.float32, "eager")
    hub.save_pretrained(os.path.join(d, "hubertL"))
    clips = torch.randn(4, 32000) * 0.2
    x = (clips - clips.mean()) / torch.sqrt(clips.var(unbiased=False) + 1e-7)
    np.save(os.path.join(d, "clips.npy"), x.numpy())
    with torch.inference_mode():
        o = hub(x.to(DEV), output_hidden_states=True)
        v5 = torch.stack(o.hidden_states[-4:]).mean(0).mean(1).float().cpu().numpy()
    np.save(os.path.join(d, "hf_h5.npy"), v5)
    print("exported to", d)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "bench":
        bench(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "export":
        export(sys.argv[2])
    else:
        sys.exit(__doc__)
