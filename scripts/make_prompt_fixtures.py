#!/usr/bin/env python3
"""Writes tests/fixtures/pipeline/prompts.json: the reference's prompt strings and answer clean-ups
(MERTools MER2025_Track23: base_dataset.get_prompt_for_multimodal, qwen.reason_to_openset_qwen,
func_postprocess_qwen, Chat.answer_sample's decode) evaluated in Python on sample inputs.
Semantics as in ../shared/reference/affectgpt-spec.md §2, §4.5, §4.8."""
import json, os

def affectgpt_prompt(face_or_frame, subtitle, user_message, n=1):
    if face_or_frame == 'face':
        video = "Meanwhile, we uniformly sample raw frames from the video and extract faces from these frames: <Video>" + "<FaceHere>" * n + "</Video>. "
    else:
        video = "Meanwhile, we uniformly sample raw frames from the video: <Video>" + "<FrameHere>" * n + "</Video>. "
    return ("###Human: The audio and video merged info is: <Multi>" + "<MultiHere>" * n + "</Multi>. "
            "The audio content is as follows: <Audio>" + "<AudioHere>" * n + "</Audio>. " + video +
            f"The subtitle of this video is: <Subtitle>{subtitle}</Subtitle>. Now, please answer my question based on all the provided information. {user_message} ###Assistant: ")

def ov_prompt(reason):
    return f"Please assume the role of an expert in the field of emotions. We provide clues that may be related to the emotions of the characters. Based on the provided clues, please identify the emotional states of the main character. The main character is the one with the most detailed clues. Please separate different emotional categories with commas and output only the clearly identifiable emotional categories in a list format. If none are identified, please output an empty list. Input: We cannot recognize his emotional state; Output: [] Input: His emotional state is happy, sad, and angry; Output: [happy, sad, angry] Input: {reason}; Output: "

def postprocess(response):
    response = response.strip()
    for p in ['输入', '输出', '翻译', '让我们来翻译一下：', 'output', 'Output', 'input', 'Input']:
        if response.startswith(p):
            response = response[len(p):]
    response = response.strip()
    if response.startswith(':'):
        response = response[1:]
    if response.startswith('：'):
        response = response[1:]
    response = response.strip()
    response = response.replace('\n', '')
    return response.strip()

def answer_clean(text, bos='<|im_start|>', eos='<|im_end|>'):
    if bos in text:
        text = text.split(bos)[1]
    text = text.split(eos)[0]
    text = text.rsplit('###', 1)[0]
    return text.split('Assistant:')[-1].strip()

Q_OV = "Please recognize all possible emotional states of the character."
Q_DESC = "Please infer the person's emotional state and provide your reasoning process."
out = {
    "affectgpt": [
        {"input": fi, "subtitle": s, "question": q, "prompt": affectgpt_prompt(fi, s, q)}
        for fi in ("face", "frame") for s in ("", "Look, Ouyang is getting married too.") for q in (Q_OV, Q_DESC)
    ],
    "ov_prompt": [{"reason": r, "prompt": ov_prompt(r)} for r in ("He looks happy and relaxed.", "他很开心")],
    "postprocess": [{"in": r, "out": postprocess(r)} for r in [
        "[happy, sad]", "  Output: [happy]\n", "输出：[开心]", "Input: x; Output: [a, b]", "output:\n[happy,\nsad]\n",
        "让我们来翻译一下：[calm]", "： [angry] ", "\u3000Output：[tired]\u00a0", "", "OutputInput: [x]", "翻译输出[y]"]],
    "answer_clean": [{"in": t, "out": answer_clean(t)} for t in [
        "The character's emotional state is happy, relaxed.###<|im_end|>",
        "###Assistant: The character is sad. ### extra ###<|im_end|>",
        "<|im_start|>Human: hi ###Assistant:  Angry and tense.<|im_end|><|im_start|>more",
        "no markers at all  ", "a###b###c", "Assistant: one Assistant: two<|im_end|>"]],
}
os.makedirs('tests/fixtures/pipeline', exist_ok=True)
with open('tests/fixtures/pipeline/prompts.json', 'w', encoding='utf-8') as f:
    json.dump(out, f, ensure_ascii=False, indent=1)
print("ok")
