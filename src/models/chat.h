/* chat.h - the Qwen2.5 chat template (ChatML) that mer_chat_render implements: the template text it
 * reproduces, for reference and for tests that hand it to a jinja renderer. The API is in mer.h. */
#ifndef MER_MODELS_CHAT_H
#define MER_MODELS_CHAT_H

#include "core/core.h"

#define MER__IM_START "<|im_start|>"
#define MER__IM_END "<|im_end|>"

#endif /* MER_MODELS_CHAT_H */
