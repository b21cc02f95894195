/* prompt.h - the exact prompt strings and answer clean-ups of the reference (spec §2, §4.5, §4.8):
 * AffectGPT's multimodal prompt (face and frame configs; Track2 OV and Track3 description questions),
 * the OV-label extraction prompt, and the post-processing of both answers. */
#ifndef MER_PIPELINE_PROMPT_H
#define MER_PIPELINE_PROMPT_H

#include "core/core.h"

typedef enum mer_visual_input {
    MER_INPUT_FACE = 0,  /* multiface_audio_face_text: OpenFace crops */
    MER_INPUT_FRAME = 1, /* multiframe_audio_frame_text: raw frames */
} mer_visual_input;

/* Track2 (OV labels, `--zeroshot`) and Track3 (description) questions of base_dataset.py. */
#define MER_QUESTION_OV "Please recognize all possible emotional states of the character."
#define MER_QUESTION_DESCRIPTION "Please infer the person's emotional state and provide your reasoning process."

/* The placeholders of the AffectGPT prompt, in the order the reference adds them as special tokens
 * (ids 151665..151669 on Qwen2.5's vocabulary). */
#define MER_TOKEN_IMAGE "<ImageHere>"
#define MER_TOKEN_AUDIO "<AudioHere>"
#define MER_TOKEN_FRAME "<FrameHere>"
#define MER_TOKEN_FACE "<FaceHere>"
#define MER_TOKEN_MULTI "<MultiHere>"

/* Builds the AffectGPT prompt (get_prompt_for_multimodal) for `input`, the subtitle (NULL or "" for
 * none) and the user message, with each placeholder repeated n_query (= 1) times. Appends to out. */
mer_status mer__affectgpt_prompt(mer_buf *out, mer_visual_input input, const char *subtitle,
                                 const char *user_message, int n_query);

/* The OV-label extraction prompt of reason_to_openset_qwen with `reason` inserted. Appends to out. */
mer_status mer__ovlabel_prompt(mer_buf *out, const char *reason);

/* func_postprocess_qwen: the clean-up of the extraction LLM's answer. Writes the result to out. */
mer_status mer__ovlabel_postprocess(const char *response, mer_buf *out);

/* The decode clean-up of Chat.answer_sample on a decoded answer (special tokens kept): text after
 * the first bos (if any), before the first eos, before the last "###", after the last "Assistant:",
 * stripped. bos/eos are the token strings (e.g. "<|im_start|>", "<|im_end|>"). */
mer_status mer__affectgpt_answer_clean(const char *decoded, const char *bos, const char *eos, mer_buf *out);

#endif
