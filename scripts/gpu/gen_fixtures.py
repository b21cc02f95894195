#!/usr/bin/env python3
"""Builds tiny random-weight models of the architectures mer implements with the REFERENCE
implementation (HF transformers + PyTorch), runs them, and saves weights + inputs + expected outputs
as small fixtures. Run on the GPU machine (which has torch + transformers + safetensors):

    python3 scripts/gpu/gen_fixtures.py OUTDIR

Everything runs on the CPU in float32 (deterministic, no TF32). Output layout (all small):
  qwen2_tiny/        config.json model.safetensors   expected.safetensors (ids, logits, greedy)
  qwen2_tiny_tied/   same, tie_word_embeddings=true
  qwen2_lora/        adapter_model.safetensors adapter.pth (PEFT key names) adapter_config.json
                     expected.safetensors (logits and greedy ids of base+LoRA)
  clip_tiny/         config.json model.safetensors pytorch_model.bin expected.safetensors
  hubert_tiny/       config.json model.safetensors (parametrizations names) pytorch_model.bin
                     (weight_g/weight_v names) expected.safetensors
  versions.txt       torch / transformers versions used
"""
import json, os, sys
import torch
import transformers

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.manual_seed(1234)
OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)


def save_dir(model, d, extra_bin=None):
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d, safe_serialization=True)
    if extra_bin is not None:
        torch.save(extra_bin, os.path.join(d, "pytorch_model.bin"))


def save_file(t, path):  # every tensor its own contiguous copy (hidden states alias each other)
    from safetensors.torch import save_file as _save
    _save({k: v.detach().clone().contiguous() for k, v in t.items()}, path)


def contig(t):
    return {k: v.detach().contiguous().clone() for k, v in t.items()}


# --- Qwen2 --------------------------------------------------------------------------------------
def qwen2(tied, name):
    from transformers import Qwen2Config, Qwen2ForCausalLM, GenerationConfig
    cfg = Qwen2Config(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=tied,
                      initializer_range=0.2, use_sliding_window=False, attn_implementation="eager")
    torch.manual_seed(7 if tied else 3)
    m = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():  # non-zero biases and norm weights so that they are tested
        for n, p in m.named_parameters():
            if n.endswith(".bias") or "norm" in n:
                p.add_(torch.randn_like(p) * 0.1)
    d = os.path.join(OUT, name)
    save_dir(m, d)
    ids = torch.tensor([[1, 17, 200, 33, 5, 99, 250, 7, 42, 42, 128, 3]])
    with torch.no_grad():
        logits = m(ids).logits[0]
        gc = GenerationConfig(max_new_tokens=32, do_sample=False, eos_token_id=None, pad_token_id=0,
                              bos_token_id=None)
        gen = m.generate(ids, generation_config=gc, attention_mask=torch.ones_like(ids))[0, ids.shape[1]:]
        # margins between the best two logits at each greedy step (diagnostics)
        full = torch.cat([ids[0], gen])
        lg = m(full[None]).logits[0, ids.shape[1] - 1:-1]
        top2 = lg.topk(2, dim=-1).values
    save_file({"ids": ids[0].to(torch.int32), "logits": logits.contiguous(), "greedy": gen.to(torch.int32),
               "greedy_margin": (top2[:, 0] - top2[:, 1]).contiguous()},
              os.path.join(d, "expected.safetensors"))
    return m, ids


def qwen2_lora(base, ids):
    """PEFT-style LoRA (r=4, alpha=8) on q/k/v/o/gate/up/down of every layer. The reference output is
    the model with W + (alpha/r) * B @ A, which is what PEFT computes (merged or not) in eval mode."""
    from transformers import GenerationConfig
    import copy
    r, alpha = 4, 8
    m = copy.deepcopy(base)
    sd = {}
    torch.manual_seed(11)
    targets = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    with torch.no_grad():
        for i, layer in enumerate(m.model.layers):
            for t in targets:
                mod = layer.get_submodule(t)
                A = torch.randn(r, mod.in_features) * 0.3
                B = torch.randn(mod.out_features, r) * 0.3
                mod.weight.add_((alpha / r) * (B @ A))
                pre = f"base_model.model.model.layers.{i}.{t}"
                sd[pre + ".lora_A.weight"] = A.contiguous()
                sd[pre + ".lora_B.weight"] = B.contiguous()
    d = os.path.join(OUT, "qwen2_lora")
    os.makedirs(d, exist_ok=True)
    save_file(sd, os.path.join(d, "adapter_model.safetensors"))
    # AffectGPT-style .pth: {'model': {...peft names...}, 'epoch': 3}
    torch.save({"model": sd, "epoch": 3}, os.path.join(d, "adapter.pth"))
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": r, "lora_alpha": alpha, "lora_dropout": 0.0,
                   "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                   "task_type": "CAUSAL_LM"}, f, indent=1)
    try:  # cross-check with PEFT itself when it is installed
        import peft
        cfg = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=[t.split(".")[-1] for t in targets])
        pm = peft.get_peft_model(copy.deepcopy(base), cfg).eval()
        peft.set_peft_model_state_dict(pm, {k.replace(".weight", ".weight"): v for k, v in sd.items()})
        with torch.no_grad():
            diff = (pm(ids).logits - m(ids).logits).abs().max().item()
        print("peft cross-check max diff", diff)
    except Exception as e:  # noqa
        print("peft cross-check skipped:", repr(e)[:200])
    with torch.no_grad():
        logits = m(ids).logits[0]
        gc = GenerationConfig(max_new_tokens=32, do_sample=False, eos_token_id=None, pad_token_id=0, bos_token_id=None)
        gen = m.generate(ids, generation_config=gc, attention_mask=torch.ones_like(ids))[0, ids.shape[1]:]
    save_file({"ids": ids[0].to(torch.int32), "logits": logits.contiguous(), "greedy": gen.to(torch.int32)},
              os.path.join(d, "expected.safetensors"))


# --- CLIP vision ----------------------------------------------------------------------------------
def clip():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=56, patch_size=14, projection_dim=16, hidden_act="quick_gelu",
                           layer_norm_eps=1e-5, initializer_range=0.2, attn_implementation="eager")
    torch.manual_seed(21)
    m = CLIPVisionModelWithProjection(cfg).eval()
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith(".bias") or "norm" in n:
                p.add_(torch.randn_like(p) * 0.1)
    d = os.path.join(OUT, "clip_tiny")
    save_dir(m, d, extra_bin=contig(m.state_dict()))
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        o = m(pixel_values=x, output_hidden_states=True)
    t = {"pixel_values": x, "image_embeds": o.image_embeds.contiguous(),
         "last_hidden_state": o.last_hidden_state.contiguous()}
    for i, h in enumerate(o.hidden_states):
        t[f"hidden_states.{i}"] = h.contiguous()
    save_file(t, os.path.join(d, "expected.safetensors"))


# --- HuBERT ---------------------------------------------------------------------------------------
def hubert():
    from transformers import HubertConfig, HubertModel
    cfg = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                       conv_dim=(16, 16, 16, 16, 16, 16, 16), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
                       conv_stride=(5, 2, 2, 2, 2, 2, 2), feat_extract_norm="layer", do_stable_layer_norm=True,
                       conv_bias=True, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                       hidden_act="gelu", feat_extract_activation="gelu", layer_norm_eps=1e-5,
                       initializer_range=0.2, attn_implementation="eager")
    torch.manual_seed(31)
    m = HubertModel(cfg).eval()
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith(".bias") or "norm" in n:
                p.add_(torch.randn_like(p) * 0.1)
    d = os.path.join(OUT, "hubert_tiny")
    sd = contig(m.state_dict())
    # the older checkpoint naming of the weight-normed positional conv (chinese-hubert-large uses it)
    old = {}
    for k, v in sd.items():
        k2 = k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v")
        old[k2] = v
    save_dir(m, d, extra_bin=old)
    # 2 clips of 0.5 s at 16 kHz, normalised jointly like AffectGPT's feature-extractor quirk
    raw = torch.randn(2, 8000) * 0.3
    joint = (raw - raw.mean()) / torch.sqrt(raw.var(unbiased=False) + 1e-7)
    with torch.no_grad():
        o = m(joint, output_hidden_states=True)
    t = {"raw": raw, "input_values": joint, "last_hidden_state": o.last_hidden_state.contiguous(),
         "extract_features": m.feature_extractor(joint).transpose(1, 2).contiguous()}
    for i, h in enumerate(o.hidden_states):
        t[f"hidden_states.{i}"] = h.contiguous()
    # the AffectGPT audio feature: mean of the last 4 hidden states (here: all 3), then over time
    hs = torch.stack(o.hidden_states[-4:]).mean(0).mean(1)
    t["affectgpt_feature"] = hs.contiguous()
    save_file(t, os.path.join(d, "expected.safetensors"))
    print("hubert keys:", [k for k in sd if "pos_conv" in k])


base, ids = qwen2(False, "qwen2_tiny")
qwen2(True, "qwen2_tiny_tied")
qwen2_lora(base, ids)
clip()
hubert()
with open(os.path.join(OUT, "versions.txt"), "w") as f:
    f.write(f"torch {torch.__version__}\ntransformers {transformers.__version__}\n")
print("done")
