/* gguf_names.c - the name tables between Hugging Face checkpoints and llama.cpp's GGUF files. A rule is
 * a pair of patterns in which '#' stands for a layer number (decimal digits); mapping finds the rule whose
 * one side matches and writes the other side with the same number. Names without a rule pass unchanged. */
#include "io/gguf_names.h"

#include "io/hfconfig.h"

#include <string.h>

typedef struct name_rule {
    const char *hf;
    const char *gguf;
} name_rule;

/* Qwen2 (Qwen2ForCausalLM), as llama.cpp's convert_hf_to_gguf.py names its tensors. */
static const name_rule QWEN2_NAMES[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
    {"model.layers.#.input_layernorm.weight", "blk.#.attn_norm.weight"},
    {"model.layers.#.self_attn.q_proj.weight", "blk.#.attn_q.weight"},
    {"model.layers.#.self_attn.q_proj.bias", "blk.#.attn_q.bias"},
    {"model.layers.#.self_attn.k_proj.weight", "blk.#.attn_k.weight"},
    {"model.layers.#.self_attn.k_proj.bias", "blk.#.attn_k.bias"},
    {"model.layers.#.self_attn.v_proj.weight", "blk.#.attn_v.weight"},
    {"model.layers.#.self_attn.v_proj.bias", "blk.#.attn_v.bias"},
    {"model.layers.#.self_attn.o_proj.weight", "blk.#.attn_output.weight"},
    {"model.layers.#.post_attention_layernorm.weight", "blk.#.ffn_norm.weight"},
    {"model.layers.#.mlp.gate_proj.weight", "blk.#.ffn_gate.weight"},
    {"model.layers.#.mlp.up_proj.weight", "blk.#.ffn_up.weight"},
    {"model.layers.#.mlp.down_proj.weight", "blk.#.ffn_down.weight"},
};

static const mer_gguf_hparam QWEN2_HPARAMS[] = {
    {"max_position_embeddings", NULL, "context_length", MER_KV_U32},
    {"hidden_size", NULL, "embedding_length", MER_KV_U32},
    {"num_hidden_layers", NULL, "block_count", MER_KV_U32},
    {"intermediate_size", NULL, "feed_forward_length", MER_KV_U32},
    {"num_attention_heads", NULL, "attention.head_count", MER_KV_U32},
    {"num_key_value_heads", NULL, "attention.head_count_kv", MER_KV_U32},
    {"rope_theta", "rope_parameters.rope_theta", "rope.freq_base", MER_KV_F32},
    {"rms_norm_eps", NULL, "attention.layer_norm_rms_epsilon", MER_KV_F32},
};

typedef struct arch_table {
    const char *arch;
    const char *model_type;   /* config.json model_type */
    const char *hf_class;     /* config.json architectures[0] */
    const name_rule *names;
    size_t n_names;
    const mer_gguf_hparam *hparams;
    size_t n_hparams;
} arch_table;

static const arch_table ARCHS[] = {
    {"qwen2", "qwen2", "Qwen2ForCausalLM", QWEN2_NAMES, MER_ARRAY_LEN(QWEN2_NAMES), QWEN2_HPARAMS,
     MER_ARRAY_LEN(QWEN2_HPARAMS)},
};

static const arch_table *find_arch(const char *arch) {
    for (size_t i = 0; arch && i < MER_ARRAY_LEN(ARCHS); i++)
        if (!strcmp(ARCHS[i].arch, arch)) return &ARCHS[i];
    return NULL;
}

const char *mer__gguf_arch_known(const char *arch) {
    const arch_table *a = find_arch(arch);
    return a ? a->arch : NULL;
}

const char *mer__gguf_arch_from_config(const mer_config *cfg) {
    if (!cfg) return NULL;
    const char *mt = NULL;
    if (mer__config_get_str(cfg, "model_type", &mt, NULL) == MER_OK)
        for (size_t i = 0; i < MER_ARRAY_LEN(ARCHS); i++)
            if (!strcmp(ARCHS[i].model_type, mt)) return ARCHS[i].arch;
    if (mer__config_get_str(cfg, "architectures.0", &mt, NULL) == MER_OK)
        for (size_t i = 0; i < MER_ARRAY_LEN(ARCHS); i++)
            if (!strcmp(ARCHS[i].hf_class, mt)) return ARCHS[i].arch;
    return NULL;
}

/* Matches name against pat ('#' = 1..9 digits); on success num and num_len give the digits. */
static int match(const char *pat, const char *name, const char **num, size_t *num_len) {
    *num = NULL;
    *num_len = 0;
    while (*pat) {
        if (*pat == '#') {
            size_t k = 0;
            while (name[k] >= '0' && name[k] <= '9') k++;
            if (!k || k > 9) return 0;
            *num = name;
            *num_len = k;
            name += k;
            pat++;
            continue;
        }
        if (*pat++ != *name++) return 0;
    }
    return *name == 0;
}

static int render(const char *pat, const char *num, size_t num_len, char *out, size_t cap) {
    size_t n = 0;
    for (; *pat; pat++) {
        if (*pat == '#') {
            if (n + num_len >= cap) return -1;
            memcpy(out + n, num, num_len);
            n += num_len;
        } else {
            if (n + 1 >= cap) return -1;
            out[n++] = *pat;
        }
    }
    out[n] = 0;
    return 1;
}

static int map_name(const char *arch, const char *name, int to_gguf, char *out, size_t cap) {
    const arch_table *a = find_arch(arch);
    for (size_t i = 0; a && i < a->n_names; i++) {
        const char *from = to_gguf ? a->names[i].hf : a->names[i].gguf;
        const char *to = to_gguf ? a->names[i].gguf : a->names[i].hf;
        const char *num;
        size_t nl;
        if (match(from, name, &num, &nl)) return render(to, num, nl, out, cap);
    }
    size_t n = strlen(name);
    if (n >= cap) return -1;
    memcpy(out, name, n + 1);
    return 0;
}

int mer__gguf_name_from_hf(const char *arch, const char *hf_name, char *out, size_t cap) {
    return map_name(arch, hf_name, 1, out, cap);
}

int mer__gguf_name_to_hf(const char *arch, const char *gguf_name, char *out, size_t cap) {
    return map_name(arch, gguf_name, 0, out, cap);
}

const mer_gguf_hparam *mer__gguf_hparams(const char *arch, size_t *n) {
    const arch_table *a = find_arch(arch);
    *n = a ? a->n_hparams : 0;
    return a ? a->hparams : NULL;
}
