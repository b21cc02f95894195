#!/usr/bin/env python3
"""Reference for `mer extract` on the tiny AffectGPT LLM (tests/fixtures/models/affectgpt_tiny/llm):
the OV-extraction prompt of spec §2 in Qwen2.5's chat template (default system prompt), tokenised by
HF tokenizers, greedy generation with HF's repetition penalty 1.05 (the reference samples; greedy makes
it comparable), decoded, and func_postprocess_qwen applied. Writes OUTDIR/extract_expected.json."""
import json, os, sys
import torch
from tokenizers import Tokenizer
from transformers import Qwen2ForCausalLM, GenerationConfig

OUT = sys.argv[1]
LLM = "tests/fixtures/models/affectgpt_tiny/llm"
tk = Tokenizer.from_file(os.path.join(LLM, "tokenizer.json"))
m = Qwen2ForCausalLM.from_pretrained(LLM).eval()
eos = tk.token_to_id("<|im_end|>")


def prompt(reason):
    return ("Please assume the role of an expert in the field of emotions. We provide clues that may be related to the emotions of the characters. "
            "Based on the provided clues, please identify the emotional states of the main character. The main character is the one with the most "
            "detailed clues. Please separate different emotional categories with commas and output only the clearly identifiable emotional categories "
            "in a list format. If none are identified, please output an empty list. Input: We cannot recognize his emotional state; Output: [] Input: "
            f"His emotional state is happy, sad, and angry; Output: [happy, sad, angry] Input: {reason}; Output: ")


def chat(user):
    return ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")


def post(r):
    r = r.strip()
    for p in ['输入', '输出', '翻译', '让我们来翻译一下：', 'output', 'Output', 'input', 'Input']:
        if r.startswith(p):
            r = r[len(p):]
    r = r.strip()
    if r.startswith(':'):
        r = r[1:]
    if r.startswith('：'):
        r = r[1:]
    return r.strip().replace('\n', '').strip()


rows = []
for name, reason in [("s1", "He smiles broadly and laughs; he seems happy and relaxed."),
                     ("s2", "Her voice trembles and she frowns, she looks worried and sad."),
                     ("s3", "他很生气。")]:
    ids = tk.encode(chat(prompt(reason)), add_special_tokens=False).ids
    x = torch.tensor([ids])
    gc = GenerationConfig(max_new_tokens=20, do_sample=False, repetition_penalty=1.05, eos_token_id=eos, pad_token_id=0,
                          bos_token_id=None)
    with torch.no_grad():
        out = m.generate(x, attention_mask=torch.ones_like(x), generation_config=gc)[0, len(ids):].tolist()
    gen = [t for t in out if t != eos]
    text = tk.decode(gen, skip_special_tokens=True)
    rows.append({"name": name, "reason": reason, "prompt_ids": ids, "out_ids": out, "text": text, "openset": post(text)})
    print(name, len(ids), out[:10], repr(post(text))[:60])
json.dump(rows, open(os.path.join(OUT, "extract_expected.json"), "w"), ensure_ascii=False, indent=0)
