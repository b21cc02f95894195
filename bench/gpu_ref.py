#!/usr/bin/env python3
"""The HF transformers / PyTorch side of bench/gpu.sh, run on the GPU machine in the same session as
mer's CUDA benchmark.

    gpu_ref.py bench OUT.json      Qwen2.5-7B shape (random bf16 weights, sdpa attention): prefill of 512
                                   tokens, generate() decode at batch 1 and 8; the card's copy bandwidth
                                   and bf16 GEMM rate through torch
    gpu_ref.py export DIR          a 2-layer model at Qwen2.5-7B widths (vocab 16384) with random weights,
                                   saved as an HF bf16 checkpoint, plus expected.safetensors: 64 prompt ids,
                                   logits of HF in bf16 and of the same weights upcast to f32, and 16 greedy
                                   tokens of each (the reference for bench_gpu parity)
    gpu_ref.py summary OUTDIR      the whole table of bench/gpu.sh from the result files in OUTDIR (the
                                   LLM in bf16, q8_0 and q4_0, the encoders, AffectGPT end to end, the
                                   GPU tests); needs no torch, so it also runs on fetched results
"""
import json
import os
import statistics
import sys
import time

CFG_7B = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
              num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768,
              rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False, use_sliding_window=False)


def build(torch, dtype, **over):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    cfg = Qwen2Config(**{**CFG_7B, **over})
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("cuda"):
            m = Qwen2ForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    with torch.no_grad():  # explicit init, whatever transformers' own init does
        for n, p in m.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.02)
            elif "norm" in n:
                p.fill_(1.0)
            else:
                p.zero_()
    return m.eval()


def cuda_ms(torch, fn, warm=3, reps=10):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    return statistics.median(ts)


def bench(out):
    import torch
    res = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0)}
    import transformers
    res["transformers"] = transformers.__version__
    # ceilings through torch
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda").random_(0, 255)
    b = torch.empty_like(a)
    ms = cuda_ms(torch, lambda: b.copy_(a), 3, 20)
    res["copy_bw_GBs"] = 2 * n / (ms * 1e-3) / 1e9
    del a, b
    x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = cuda_ms(torch, lambda: x @ y, 3, 10)
    res["gemm_bf16_8192_TFLOPs"] = 2 * 8192 ** 3 / (ms * 1e-3) / 1e12
    del x, y
    torch.cuda.empty_cache()

    t0 = time.perf_counter()
    m = build(torch, torch.bfloat16)
    torch.cuda.synchronize()
    res["init_s"] = time.perf_counter() - t0
    res["attn_implementation"] = getattr(m.config, "_attn_implementation", "?")
    V = CFG_7B["vocab_size"]
    g = torch.Generator(device="cuda").manual_seed(1)
    with torch.inference_mode():
        ids = torch.randint(0, V, (1, 512), device="cuda", generator=g)
        try:
            res["prefill512_ms"] = cuda_ms(torch, lambda: m(ids, logits_to_keep=1))
        except TypeError:
            res["prefill512_ms"] = cuda_ms(torch, lambda: m(ids))
        res["prefill512_all_logits_ms"] = cuda_ms(torch, lambda: m(ids), 2, 5)

        def gen(bs, new):
            p = torch.randint(0, V, (bs, 32), device="cuda", generator=g)
            torch.cuda.synchronize()
            t = time.perf_counter()
            m.generate(p, attention_mask=torch.ones_like(p), max_new_tokens=new, min_new_tokens=new,
                       do_sample=False, pad_token_id=0, eos_token_id=None)
            torch.cuda.synchronize()
            return time.perf_counter() - t

        for bs in (1, 8):
            gen(bs, 4)
            t1 = min(gen(bs, 1) for _ in range(2))
            tn = gen(bs, 129)
            res[f"decode_b{bs}_tok_s"] = bs * 128 / (tn - t1)
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res, indent=1))


def export(d):
    import copy
    import torch
    from safetensors.torch import save_file
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    m = build(torch, torch.bfloat16, num_hidden_layers=2, vocab_size=16384)
    with torch.no_grad():  # non-zero biases and norm weights, as the tiny fixtures
        for n, p in m.named_parameters():
            if n.endswith(".bias") or "norm" in n:
                p.add_(torch.randn_like(p) * 0.1)
    os.makedirs(d, exist_ok=True)
    m.save_pretrained(d, safe_serialization=True)
    m32 = copy.deepcopy(m).float()
    g = torch.Generator(device="cuda").manual_seed(3)
    ids = torch.randint(0, 16384, (1, 64), device="cuda", generator=g)
    out = {"ids": ids[0].to(torch.int32).cpu()}
    with torch.inference_mode():
        for tag, mm in (("bf16", m), ("f32", m32)):
            out["logits_" + tag] = mm(ids).logits[0].float().cpu().contiguous()
            gen = mm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, min_new_tokens=16,
                              do_sample=False, pad_token_id=0, eos_token_id=None)[0, 64:]
            out["greedy_" + tag] = gen.to(torch.int32).cpu().contiguous()
    save_file(out, os.path.join(d, "expected.safetensors"))
    print("exported", d, {k: tuple(v.shape) for k, v in out.items()})


def read_results(path):
    r = {}
    if path and os.path.exists(path):
        for line in open(path):
            p = line.split()
            if len(p) >= 3 and p[0] == "RESULT":
                r[p[1]] = float(p[2])
    return r


def summary(d):
    """One markdown table from the files bench/gpu.sh leaves in d (missing files leave '-')."""
    def res(name):
        return read_results(os.path.join(d, name))

    def js(name):
        p = os.path.join(d, name)
        return json.load(open(p)) if os.path.exists(p) else {}

    o = res("ours.txt")
    o.update(res("parity.txt"))
    q, e, pl = res("quant.txt"), {}, res("pipeline.txt")
    for n in ("enc_ours.txt", "enc_parity.txt"):
        e.update(res(n))
    h, he, hp = js("hf.json"), js("enc_hf.json"), js("hf_pipeline.json")
    card = h.get("device") or he.get("device") or hp.get("device") or "?"

    def f(v, nd=1):
        return "-" if v is None else f"{v:.{nd}f}"

    def ratio(a, b, inv=False):
        if not a or not b:
            return "-"
        return f"{(b / a if inv else a / b):.2f}x"

    rows = []

    def row(name, ov, hv, target, inv=False, nd=1):
        rows.append(f"| {name} | {f(ov, nd)} | {f(hv, nd)} | {ratio(ov, hv, inv)} | {target} |")

    def section(title):
        rows.append(f"| **{title}** | | | | |")

    section("Qwen2.5-7B shape, bf16 (random weights)")
    row("decode batch 1 (tok/s)", o.get("decode_b1"), h.get("decode_b1_tok_s"), ">= 170 (llama.cpp f16 122.6)")
    row("decode batch 8 (tok/s)", o.get("decode_b8"), h.get("decode_b8_tok_s"), ">= 1200")
    row("prefill 512 tokens (ms)", o.get("prefill512"), h.get("prefill512_ms"), "<= 15", inv=True, nd=2)
    row("logits rel. err. vs HF f32 (2 layers, 7B widths)", o.get("parity_logits_vs_hf_f32"),
        o.get("parity_hf_bf16_vs_hf_f32"), "HF's own bf16 error beside it", nd=4)
    row("device memory change over 10,000 decode steps (B)", o.get("leak_delta"), None, "0", nd=0)
    section("Qwen2.5-7B shape, quantised (random weights)")
    row("q8_0 decode batch 1 (tok/s)", q.get("q8_0_decode_b1"), None, ">= 300 (llama.cpp 157.5)")
    row("q4_0 decode batch 1 (tok/s)", q.get("q4_0_decode_b1"), None, ">= 450 (llama.cpp 228.9)")
    row("q8_0 decode batch 8 (tok/s)", q.get("q8_0_decode_b8"), None, "")
    row("q4_0 decode batch 8 (tok/s)", q.get("q4_0_decode_b8"), None, "")
    row("q8_0 prefill 512 tokens (ms)", q.get("q8_0_prefill512"), None, "", nd=2)
    row("q4_0 prefill 512 tokens (ms)", q.get("q4_0_prefill512"), None, "", nd=2)
    section("Encoders, bf16 (random weights)")
    row("CLIP ViT-L/14, 8 frames (ms)", e.get("clip_l_8frames_ms"), he.get("hf_clip_l_8frames_ms"), "<= 4", inv=True,
        nd=2)
    row("chinese-hubert-large, 8 clips of 2 s (ms)", e.get("hubert_l_8x2s_ms"), he.get("hf_hubert_l_8x2s_ms"), "<= 6",
        inv=True, nd=2)
    for k in sorted(k for k in e if k.startswith("parity_")):
        row(k + " (rel. err. vs HF f32)", e[k], None, "", nd=4)
    section("AffectGPT end to end (CLIP-L + HuBERT-L + fusion + Qwen2.5-7B bf16)")
    row("one clip: 8 frames, 8 clips, the Track2 prompt, 30 generated tokens (ms)", pl.get("e2e_total_ms"),
        hp.get("e2e_total_ms"), "<= 250", inv=True, nd=1)
    for k in sorted(k for k in pl if k.startswith("dataset_b")):
        row(f"dataset run, batch {k[len('dataset_b'):-len('_clips_per_s')]} (clips/s)", pl[k], hp.get(k), ">= 20")
    section("Ceilings measured in the same run")
    row("copy bandwidth (GB/s)", o.get("copy_bw"), h.get("copy_bw_GBs"), "", nd=0)
    row("bf16 GEMM 8192^3 (TFLOP/s)", o.get("gemm_bf16_8192"), h.get("gemm_bf16_8192_TFLOPs"), "", nd=0)
    lines = [f"Card: {card}. mer (CUDA) beside HF transformers {h.get('transformers', he.get('transformers', '?'))} / "
             f"torch {h.get('torch', he.get('torch', '?'))} measured in the same run; '-' where a step did not run.", "",
             "| metric | mer | HF transformers | mer vs HF | target (issue #8) |", "| --- | --- | --- | --- | --- |"] + rows
    if o.get("decode_b1") and o.get("decode_step_bytes") and o.get("copy_bw"):
        ceil = o["copy_bw"] / o["decode_step_bytes"]
        lines += ["", f"bf16 batch-1 decode reads {o['decode_step_bytes']:.2f} GB a token: the copy bandwidth caps it "
                  f"at {ceil:.1f} tok/s; mer reaches {o['decode_b1'] / ceil * 100:.1f}% of that."]
    for dt in ("q8_0", "q4_0"):
        if q.get(f"{dt}_decode_b1_ceiling"):
            lines += [f"{dt} batch-1 decode: ceiling {q[f'{dt}_decode_b1_ceiling']:.1f} tok/s, mer at "
                      f"{q.get(f'{dt}_decode_b1_of_copy_ceiling', 0) * 100:.1f}% of it."]
    extra = [k for k in sorted(o) if k.startswith(("decode_", "gemv_", "parity_", "leak_", "model_", "prefill"))]
    lines += ["", "All bf16 LLM figures (mer):", ""] + [f"    {k} = {o[k]:.6g}" for k in extra]
    tests = []
    for n in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if n.startswith("test_") and n.endswith(".log"):
            got = [l.strip() for l in open(os.path.join(d, n), errors="replace") if " passed, " in l]
            tests.append(f"    {got[-1] if got else n + ': no summary line'}")
    if tests:
        lines += ["", "GPU tests:", ""] + tests
    print("\n".join(lines))


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "bench":
        bench(sys.argv[2])
    elif cmd == "export":
        export(sys.argv[2])
    elif cmd == "summary" and len(sys.argv) == 3:
        summary(sys.argv[2])
    else:
        print(__doc__)
        sys.exit(2)
