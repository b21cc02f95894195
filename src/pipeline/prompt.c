/* prompt.c - exact prompt templates and answer clean-ups of the reference (see prompt.h). */
#include "pipeline/prompt.h"
#include "eval/eval.h"

#include <string.h>

static mer_status put_rep(mer_buf *b, const char *tok, int n) {
    mer_status st = MER_OK;
    for (int i = 0; i < n && !st; i++) st = mer__buf_append(b, tok, strlen(tok));
    return st;
}

mer_status mer__affectgpt_prompt(mer_buf *out, mer_visual_input input, const char *subtitle,
                                 const char *user_message, int n_query) {
    mer_status st;
    if (!subtitle) subtitle = "";
    if (n_query < 1) n_query = 1;
    if ((st = mer__buf_printf(out, "###Human: The audio and video merged info is: <Multi>")) ||
        (st = put_rep(out, MER_TOKEN_MULTI, n_query)) ||
        (st = mer__buf_printf(out, "</Multi>. The audio content is as follows: <Audio>")) ||
        (st = put_rep(out, MER_TOKEN_AUDIO, n_query)))
        return st;
    if (input == MER_INPUT_FACE) {
        if ((st = mer__buf_printf(out, "</Audio>. Meanwhile, we uniformly sample raw frames from the video and extract "
                                       "faces from these frames: <Video>")) ||
            (st = put_rep(out, MER_TOKEN_FACE, n_query)))
            return st;
    } else {
        if ((st = mer__buf_printf(out, "</Audio>. Meanwhile, we uniformly sample raw frames from the video: <Video>")) ||
            (st = put_rep(out, MER_TOKEN_FRAME, n_query)))
            return st;
    }
    return mer__buf_printf(out, "</Video>. The subtitle of this video is: <Subtitle>%s</Subtitle>. Now, please answer my "
                                "question based on all the provided information. %s ###Assistant: ",
                           subtitle, user_message);
}

mer_status mer__ovlabel_prompt(mer_buf *out, const char *reason) {
    return mer__buf_printf(
        out,
        "Please assume the role of an expert in the field of emotions. We provide clues that may be related to the "
        "emotions of the characters. Based on the provided clues, please identify the emotional states of the main "
        "character. The main character is the one with the most detailed clues. Please separate different emotional "
        "categories with commas and output only the clearly identifiable emotional categories in a list format. If "
        "none are identified, please output an empty list. Input: We cannot recognize his emotional state; Output: [] "
        "Input: His emotional state is happy, sad, and angry; Output: [happy, sad, angry] Input: %s; Output: ",
        reason);
}

/* Python str.strip() of a NUL-terminated string, into b. */
static mer_status py_strip(const char *s, mer_buf *b) {
    size_t a, e;
    mer__py_strip_bounds(s, strlen(s), &a, &e);
    b->len = 0;
    return mer__buf_append(b, s + a, e - a);
}

static mer_status drop_prefix(mer_buf *b, const char *prefix) {
    size_t n = strlen(prefix);
    if (b->len >= n && memcmp(b->data, prefix, n) == 0) {
        memmove(b->data, b->data + n, b->len - n + 1);
        b->len -= n;
    }
    return MER_OK;
}

mer_status mer__ovlabel_postprocess(const char *response, mer_buf *out) {
    static const char *const prefixes[] = {"输入", "输出", "翻译", "让我们来翻译一下：", "output", "Output", "input", "Input"};
    mer_buf t = {0};
    mer_status st = py_strip(response, &t);
    for (size_t i = 0; !st && i < MER_ARRAY_LEN(prefixes); i++) st = drop_prefix(&t, prefixes[i]);
    if (!st) st = py_strip(t.data, out);
    if (!st) st = drop_prefix(out, ":");
    if (!st) st = drop_prefix(out, "：");
    if (!st) st = py_strip(out->data, &t);
    if (!st) { /* delete every '\n' */
        size_t k = 0;
        for (size_t i = 0; i < t.len; i++)
            if (t.data[i] != '\n') t.data[k++] = t.data[i];
        t.len = k;
        t.data[k] = 0;
        st = py_strip(t.data, out);
    }
    mer__buf_free(&t);
    return st;
}

/* Last occurrence of needle in hay (NULL if none). */
static const char *rfind(const char *hay, const char *needle) {
    const char *last = NULL, *p = hay;
    size_t n = strlen(needle);
    if (!n) return NULL;
    while ((p = strstr(p, needle))) { last = p; p += 1; }
    return last;
}

mer_status mer__affectgpt_answer_clean(const char *decoded, const char *bos, const char *eos, mer_buf *out) {
    const char *s = decoded, *e;
    /* split(bos)[1] if present: the text between the first and the second bos */
    if (bos && *bos && (e = strstr(s, bos))) {
        s = e + strlen(bos);
    }
    size_t len = strlen(s);
    if (bos && *bos && (e = strstr(s, bos))) len = (size_t)(e - s);
    if (eos && *eos && (e = strstr(s, eos)) && (size_t)(e - s) < len) len = (size_t)(e - s);
    char *t = mer__strndup(s, len);
    if (!t) return MER_E_NOMEM;
    char *h = (char *)rfind(t, "###");
    if (h) *h = 0;
    const char *a = rfind(t, "Assistant:");
    mer_status st = py_strip(a ? a + strlen("Assistant:") : t, out);
    free(t);
    return st;
}
