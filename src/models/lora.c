/* lora.c - PEFT LoRA adapters for the Qwen2 decoder. An adapter is a state dict (safetensors, or a
 * PyTorch .pth/.bin through mer_weights_open) whose LoRA tensors are named as PEFT names them,
 *   <any prefix>layers.{i}.{self_attn.q_proj|...|mlp.down_proj}.lora_{A|B}[.<adapter name>].weight
 * (so base_model.model.model.layers..., AffectGPT's llama_model.base_model... and a .pth that nests the
 * state dict under 'model' all match); tensors without "lora_" in their name are ignored (AffectGPT
 * stores its projectors beside the adapter). A is [r, in], B is [out, r]; both are read into f32. The
 * scale is given, or alpha / r (alpha / sqrt(r) with use_rslora) from adapter_config.json beside the
 * adapter. */
#include "models/qwen2.h"

#include "io/hfconfig.h"

#include <math.h>
#include <string.h>

void mer__lora_free(mer__lora *l) {
    if (!l) return;
    free(l->pairs);
    free(l->mem);
    free(l);
}

/* Parses a PEFT LoRA name; returns 1 with layer, proj and which (0 = A, 1 = B) when it is one. */
static int parse_name(const char *name, int *layer, int *proj, int *which) {
    size_t n = strlen(name);
    static const char W[] = ".weight";
    if (n < sizeof W || strcmp(name + n - (sizeof W - 1), W)) return 0;
    n -= sizeof W - 1;
    /* the last ".lora_A" / ".lora_B", followed by the end or by one ".<adapter>" component */
    const char *hit = NULL;
    for (const char *p = name; (p = strstr(p, ".lora_")) && p < name + n; p++)
        if ((p[6] == 'A' || p[6] == 'B') && (p + 7 == name + n || p[7] == '.')) hit = p;
    if (!hit) return 0;
    if (hit + 7 != name + n) {
        const char *ad = hit + 8;
        if (ad >= name + n || memchr(ad, '.', (size_t)(name + n - ad))) return 0;
    }
    *which = hit[6] == 'B';
    size_t pre = (size_t)(hit - name); /* name[0..pre) ends with "layers.N.<module>" */
    for (int p = 0; p < MER__N_PROJ; p++) {
        const char *mod = mer__qwen2_proj_name(p);
        size_t ml = strlen(mod);
        if (pre < ml + 1 || memcmp(name + pre - ml, mod, ml) || name[pre - ml - 1] != '.') continue;
        size_t e = pre - ml - 1, s = e; /* digits in [s, e) */
        while (s > 0 && name[s - 1] >= '0' && name[s - 1] <= '9') s--;
        if (s == e || e - s > 6) return 0;
        static const char LAYERS[] = "layers.";
        size_t ll = sizeof LAYERS - 1;
        if (s < ll || memcmp(name + s - ll, LAYERS, ll) || (s > ll && name[s - ll - 1] != '.')) return 0;
        int v = 0;
        for (size_t i = s; i < e; i++) v = v * 10 + (name[i] - '0');
        *layer = v, *proj = p;
        return 1;
    }
    return 0;
}

/* Reads scale from adapter_config.json in dir. */
static mer_status config_scale(const char *dir, const char *adapter, double *scale, mer_err *err) {
    char *cp = mer__path_join(dir, "adapter_config.json");
    if (!cp) return mer__errf(err, MER_E_NOMEM, "out of memory");
    mer_config *cfg = NULL;
    mer_err e2 = {0};
    mer_status st = mer__config_load(cp, &cfg, &e2);
    if (st == MER_E_IO) {
        st = mer__errf(err, MER_E_NOTFOUND,
                       "%s: no adapter_config.json beside the adapter (%s); give the LoRA scale (lora_alpha / r)",
                       adapter, cp);
        goto done;
    }
    if (st) {
        if (err) *err = e2;
        goto done;
    }
    double alpha;
    int64_t r;
    int rs = 0;
    if ((st = mer__config_get_float(cfg, "lora_alpha", &alpha, err)) || (st = mer__config_get_int(cfg, "r", &r, err)))
        goto done;
    if (mer__config_has(cfg, "use_rslora") && (st = mer__config_get_bool(cfg, "use_rslora", &rs, err))) goto done;
    if (r <= 0 || !isfinite(alpha)) {
        st = mer__errf(err, MER_E_RANGE, "%s: r = %lld / lora_alpha = %g do not give a scale", cp, (long long)r, alpha);
        goto done;
    }
    *scale = rs ? alpha / sqrt((double)r) : alpha / (double)r;
done:
    mer__config_free(cfg);
    free(cp);
    return st;
}

mer_status mer__lora_load(const char *path, double scale, const mer__qwen2_hp *hp, mer__lora **out,
                          mer_err *err) {
    *out = NULL;
    mer_status st = MER_OK;
    mer_weights *w = NULL;
    mer__lora *l = NULL;
    const mer_wtensor **found = NULL; /* [n_layer * N_PROJ][2] */
    char *dir = NULL, *file = NULL;
    if (mer__is_dir(path)) {
        dir = mer__strndup(path, strlen(path));
        file = mer__path_join(path, "adapter_model.safetensors");
        if (file) {
            FILE *f = fopen(file, "rb");
            if (f) fclose(f);
            else {
                free(file);
                file = mer__path_join(path, "adapter_model.bin");
            }
        }
    } else {
        dir = mer__path_dir(path);
        file = mer__strndup(path, strlen(path));
    }
    if (!dir || !file) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto fail;
    }
    if (!(scale > 0) && (st = config_scale(dir, path, &scale, err))) goto fail;
    if ((st = mer_weights_open(file, &w, err))) goto fail;
    size_t n_slots = (size_t)hp->n_layer * MER__N_PROJ;
    found = calloc(n_slots * 2, sizeof *found);
    l = calloc(1, sizeof *l);
    if (!found || !l || !(l->pairs = calloc(n_slots, sizeof *l->pairs))) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto fail;
    }
    l->n_layer = hp->n_layer;
    l->scale = (float)scale;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const mer_wtensor *t = &w->tensors[i];
        if (!strstr(t->name, "lora_")) continue;
        int layer, proj, which;
        if (!parse_name(t->name, &layer, &proj, &which)) {
            st = mer__errf(err, MER_E_UNSUPPORTED,
                           "%s: tensor '%s' is not a LoRA matrix of a Qwen2 projection (q/k/v/o/gate/up/down_proj)",
                           file, t->name);
            goto fail;
        }
        if (layer >= hp->n_layer) {
            st = mer__errf(err, MER_E_SHAPE, "%s: tensor '%s' is for layer %d but the model has %d layers", file,
                           t->name, layer, hp->n_layer);
            goto fail;
        }
        size_t slot = ((size_t)layer * MER__N_PROJ + (size_t)proj) * 2 + (size_t)which;
        if (found[slot]) {
            st = mer__errf(err, MER_E_FORMAT, "%s: tensors '%s' and '%s' are the same LoRA matrix", file,
                           found[slot]->name, t->name);
            goto fail;
        }
        if (t->dtype != MER_DTYPE_F32 && t->dtype != MER_DTYPE_F16 && t->dtype != MER_DTYPE_BF16) {
            const char *tn = mer__wtype_name((int)t->dtype);
            st = mer__errf(err, MER_E_UNSUPPORTED, "%s: tensor '%s' has element type %s (f32, f16 or bf16 expected)",
                           file, t->name, tn ? tn : "unknown");
            goto fail;
        }
        found[slot] = t;
    }
    size_t total = 0;
    for (size_t s = 0; s < n_slots; s++) {
        const mer_wtensor *A = found[2 * s], *B = found[2 * s + 1];
        if (!A && !B) continue;
        int layer = (int)(s / MER__N_PROJ), proj = (int)(s % MER__N_PROJ);
        if (!A || !B) {
            st = mer__errf(err, MER_E_FORMAT, "%s: layer %d %s has lora_%s but no lora_%s", file, layer,
                           mer__qwen2_proj_name(proj), A ? "A" : "B", A ? "B" : "A");
            goto fail;
        }
        int n_out, n_in;
        mer__qwen2_proj_shape(hp, proj, &n_out, &n_in);
        int64_t r = A->n_dims == 2 ? A->shape[0] : -1;
        if (A->n_dims != 2 || A->shape[1] != n_in || r < 1 || r > 4096 || B->n_dims != 2 || B->shape[0] != n_out ||
            B->shape[1] != r) {
            st = mer__errf(err, MER_E_SHAPE,
                           "%s: LoRA '%s' %s / '%s' %s do not fit the %d x %d projection (A [r, %d], B [%d, r] expected)",
                           file, A->name, A->n_dims == 2 ? "" : "(not 2-D)", B->name, B->n_dims == 2 ? "" : "(not 2-D)",
                           n_out, n_in, n_in, n_out);
            goto fail;
        }
        l->pairs[s].r = (int)r;
        if (r > l->r_max) l->r_max = (int)r;
        total += (size_t)r * (size_t)(n_in + n_out);
        l->n_pairs++;
    }
    if (!l->n_pairs) {
        st = mer__errf(err, MER_E_NOTFOUND, "%s: no LoRA tensors (...layers.N.<proj>.lora_A.weight) in the adapter", file);
        goto fail;
    }
    l->mem = malloc(total * sizeof *l->mem);
    if (!l->mem) {
        st = mer__errf(err, MER_E_NOMEM, "%s: out of memory (%zu LoRA values)", file, total);
        goto fail;
    }
    float *p = l->mem;
    for (size_t s = 0; s < n_slots; s++) {
        if (!l->pairs[s].r) continue;
        for (int which = 0; which < 2; which++) {
            const mer_wtensor *t = found[2 * s + (size_t)which];
            size_t n = (size_t)(t->shape[0] * t->shape[1]), eb = mer_dtype_row_bytes(t->dtype, 1);
            if (t->dtype == MER_DTYPE_F32) memcpy(p, t->data, n * 4);
            else
                for (size_t i = 0; i < n; i++) { /* element by element: the data may be unaligned */
                    uint16_t h;
                    memcpy(&h, (const uint8_t *)t->data + i * eb, 2);
                    p[i] = t->dtype == MER_DTYPE_F16 ? mer_fp16_to_fp32(h) : mer_bf16_to_fp32(h);
                }
            if (which == 0) l->pairs[s].a = p;
            else l->pairs[s].b = p;
            p += n;
        }
    }
    mer_weights_close(w);
    free(found), free(dir), free(file);
    *out = l;
    return MER_OK;
fail:
    mer_weights_close(w);
    mer__lora_free(l);
    free(found), free(dir), free(file);
    return st;
}
