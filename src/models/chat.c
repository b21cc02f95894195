/* chat.c - renders a conversation with Qwen2.5-Instruct's chat template, byte for byte as Hugging Face
 * apply_chat_template does with the jinja template of Qwen2.5-7B-Instruct's tokenizer_config.json
 * (committed as tests/fixtures/tokenizer/qwen2.5_chat_template.jinja), for conversations without tools:
 *
 *   system turn:  messages[0] if its role is "system", else the default system prompt;
 *   each message: user, a system message that is not the first, and assistant (no tool calls) as
 *                 "<|im_start|>ROLE\nCONTENT<|im_end|>\n"; a run of "tool" messages as one user turn
 *                 "<|im_start|>user" + "\n<tool_response>\nCONTENT\n</tool_response>"... + "<|im_end|>\n";
 *                 any other role renders nothing (the template has no branch for it);
 *   then "<|im_start|>assistant\n" when add_generation_prompt. */
#include "models/chat.h"

#include <string.h>

static int is_role(const mer_chat_msg *m, const char *role) { return !strcmp(m->role, role); }

mer_status mer_chat_render(const mer_chat_msg *msgs, size_t n_msgs, int add_generation_prompt, char **text,
                           size_t *len, mer_err *err) {
    if (text) *text = NULL;
    if (len) *len = 0;
    if (!text || (!msgs && n_msgs)) return mer__errf(err, MER_E_ARG, "mer_chat_render: NULL argument");
    if (n_msgs == 0) return mer__errf(err, MER_E_ARG, "mer_chat_render: no messages (the template reads messages[0])");
    for (size_t i = 0; i < n_msgs; i++)
        if (!msgs[i].role || !msgs[i].content)
            return mer__errf(err, MER_E_ARG, "mer_chat_render: message %zu has no %s", i, msgs[i].role ? "content" : "role");
    mer_buf b = {0};
    mer_status st = MER_OK;
#define PUT(s) do { if ((st = mer__buf_append(&b, (s), strlen(s)))) goto fail; } while (0)
    PUT(MER__IM_START "system\n");
    PUT(is_role(&msgs[0], "system") ? msgs[0].content : MER_QWEN25_DEFAULT_SYSTEM);
    PUT(MER__IM_END "\n");
    for (size_t i = 0; i < n_msgs; i++) {
        const mer_chat_msg *m = &msgs[i];
        if (is_role(m, "user") || (is_role(m, "system") && i > 0) || is_role(m, "assistant")) {
            PUT(MER__IM_START);
            PUT(m->role);
            PUT("\n");
            PUT(m->content);
            PUT(MER__IM_END "\n");
        } else if (is_role(m, "tool")) {
            if (i == 0 || !is_role(&msgs[i - 1], "tool")) PUT(MER__IM_START "user");
            PUT("\n<tool_response>\n");
            PUT(m->content);
            PUT("\n</tool_response>");
            if (i + 1 == n_msgs || !is_role(&msgs[i + 1], "tool")) PUT(MER__IM_END "\n");
        }
    }
    if (add_generation_prompt) PUT(MER__IM_START "assistant\n");
#undef PUT
    if (!b.data && (st = mer__buf_reserve(&b, 0))) goto fail;
    *text = b.data;
    if (len) *len = b.len;
    return MER_OK;
fail:
    mer__buf_free(&b);
    return mer__errf(err, st, "mer_chat_render: out of memory");
}
