/* cuda_backend.h - the CUDA backend as plain C: a device context (one device, one stream, a cuBLASLt
 * handle and workspace, a caching allocator), host<->device transfers, CUDA graph capture, device timers,
 * and the kernels the transformer models need (RMSNorm, embedding gather, bias + RoPE NeoX + KV-cache
 * store, SiLU*mul, residual adds, argmax, flash-style prefill attention and split-K decode attention
 * with grouped KV heads, and bf16 matmuls: a tensor-core GEMV for up to 8 rows and cuBLASLt above).
 *
 * This header includes no CUDA header, so C code can include it in every build; the functions exist
 * only when the library is built with `make CUDA=1` (MER_CUDA=1). C callers guard their calls with
 * `#if MER_CUDA`.
 *
 * Conventions. Every function that can fail returns a mer_status and fills err (may be NULL) with one
 * line "<file>:<line>: <call>: <cuda error name> (<text>)" naming where in the backend the failure
 * was seen; every CUDA and cuBLAS return code is checked, and every kernel launch is followed by a check
 * of the launch error. Work is asynchronous on the context's stream: a launch error is reported by the
 * launching call, an execution error by the next synchronising call (mer_cuda_sync, downloads).
 * Pointers named *_dev are device memory; bf16 is stored as uint16_t. Activations (normalised inputs,
 * q, KV cache, attention outputs) are bf16 (the fast path) or f32 (the exact path), named by a mer_dtype
 * argument; the residual stream and logits are always f32. Matmul is y = x @ W^T with W [n_out, n_in]
 * row-major as PyTorch stores it. A context is used by one thread at a time.
 *
 * Device layouts shared by the attention calls (elements of the activation dtype):
 *   q      [n_tok][n_head][d]
 *   cache  [n_slot][n_kv_head][n_ctx][d]   (one K and one V array per layer)
 *   out    [n_tok][n_head * d]
 * Query head h reads KV head h / (n_head / n_kv_head) (HF repeat_kv). */
#ifndef MER_KERNELS_CUDA_BACKEND_H
#define MER_KERNELS_CUDA_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "mer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mer_cuda mer_cuda;

// --- devices and the context -------------------------------------------------------------------------

/* Number of CUDA devices usable by this process; 0 when there is no driver, no device, or the build has
 * no CUDA (never fails). */
int mer_cuda_device_count(void);

/* Makes a context on `device` (an ordinal below mer_cuda_device_count()): a non-blocking stream, a
 * cuBLASLt handle with a 32 MiB workspace. MER_E_DEVICE with the CUDA message on failure. Caller frees
 * with mer_cuda_free, which also releases every block the allocator still holds. */
mer_status mer_cuda_init(int device, mer_cuda **out, mer_err *err);
void mer_cuda_free(mer_cuda *c);

/* "NVIDIA H100 80GB HBM3, 132 SMs, cc 9.0" (valid until free). */
const char *mer_cuda_name(const mer_cuda *c);
int mer_cuda_sm_count(const mer_cuda *c);

/* Options (defaults from the environment at init: MER_CUDA_PDL=1 turns programmatic dependent launch
 * on (off by default: measured slower on the H100 for the 7B decode step), MER_CUDA_GEMM=cublas routes
 * every matmul to cuBLASLt). */
void mer_cuda_set_pdl(mer_cuda *c, int on);
int mer_cuda_get_pdl(const mer_cuda *c);
enum { MER_CUDA_GEMM_AUTO = 0, MER_CUDA_GEMM_CUBLAS = 1 };
void mer_cuda_set_gemm_mode(mer_cuda *c, int mode);
/* GEMV tiling (a tuning knob; MER_CUDA_GEMV_TILE): 0 chooses, 1 or 2 tiles of 16 weight rows per block. */
void mer_cuda_set_gemv_tile(mer_cuda *c, int tile);
/* GEMV warps per block (MER_CUDA_GEMV_NW): 0 chooses, else 4, 8 or 16. */
void mer_cuda_set_gemv_warps(mer_cuda *c, int nw);

/* The context's stream as a cudaStream_t (for code that launches its own kernels). */
void *mer_cuda_stream(mer_cuda *c);

/* Waits for all work on the stream; reports the first execution error. */
mer_status mer_cuda_sync(mer_cuda *c, mer_err *err);

/* Free and total device memory (cudaMemGetInfo). */
mer_status mer_cuda_mem_info(mer_cuda *c, size_t *free_b, size_t *total_b, mer_err *err);

// --- memory ------------------------------------------------------------------------------------------

/* Device memory of at least n bytes (256-byte aligned) from the caching allocator: a block freed earlier
 * of a fitting size is reused, else cudaMalloc; when that fails, cached blocks are returned to the
 * driver and the allocation is retried once. n == 0 gives NULL and MER_OK. Not for use inside graph
 * capture (allocate before capturing). */
mer_status mer_cuda_alloc(mer_cuda *c, size_t n, void **out, mer_err *err);
/* Returns a block to the cache (NULL is a no-op). The block may be handed out again at once: work
 * queued on the context's stream that still reads it runs first, in stream order. */
void mer_cuda_release(mer_cuda *c, void *p);
/* Returns every cached (unused) block to the driver. */
mer_status mer_cuda_trim(mer_cuda *c, mer_err *err);
/* Bytes held from the driver, and bytes handed out. */
void mer_cuda_alloc_stats(const mer_cuda *c, size_t *held, size_t *in_use);

/* Pinned host memory (cudaMallocHost); caller frees with mer_cuda_host_free. */
mer_status mer_cuda_host_alloc(size_t n, void **out, mer_err *err);
void mer_cuda_host_free(void *p);

/* Copies on the context's stream. upload/download of pageable memory are synchronous for the host
 * buffer; the *_async forms need pinned host memory and return at once. */
mer_status mer_cuda_upload(mer_cuda *c, void *dst_dev, const void *src, size_t n, mer_err *err);
mer_status mer_cuda_download(mer_cuda *c, void *dst, const void *src_dev, size_t n, mer_err *err);
mer_status mer_cuda_upload_async(mer_cuda *c, void *dst_dev, const void *src_pinned, size_t n, mer_err *err);
mer_status mer_cuda_download_async(mer_cuda *c, void *dst_pinned, const void *src_dev, size_t n, mer_err *err);
mer_status mer_cuda_copy_d2d(mer_cuda *c, void *dst_dev, const void *src_dev, size_t n, mer_err *err);
mer_status mer_cuda_memset(mer_cuda *c, void *dst_dev, int byte, size_t n, mer_err *err);

// --- graphs and timing -------------------------------------------------------------------------------

typedef struct mer_cuda_graph mer_cuda_graph;

/* Starts capturing the context's stream (thread-local mode); every launch until end_capture is
 * recorded, not run. */
mer_status mer_cuda_begin_capture(mer_cuda *c, mer_err *err);
/* Ends the capture and instantiates the graph (caller frees with mer_cuda_graph_free). When a call
 * failed during the capture, pass failed = 1: the capture is ended and dropped, *out = NULL. */
mer_status mer_cuda_end_capture(mer_cuda *c, int failed, mer_cuda_graph **out, mer_err *err);
mer_status mer_cuda_graph_launch(mer_cuda *c, mer_cuda_graph *g, mer_err *err);
void mer_cuda_graph_free(mer_cuda_graph *g);

/* Milliseconds of device time taken by `fn(ud)`'s work on the stream, measured with events around it
 * (fn returns MER_OK or an error, which is passed on). */
mer_status mer_cuda_time(mer_cuda *c, mer_status (*fn)(void *ud, mer_err *err), void *ud, double *ms,
                         mer_err *err);

// --- kernels (asynchronous on the context's stream) --------------------------------------------------

/* y[r][:] = x[r][:] / sqrt(mean(x[r]^2) + eps) * w[:] for r < n_rows; x f32 [n_rows][n]; y of dtype yt
 * (bf16 rounded to nearest even, or f32). */
mer_status mer_cuda_rmsnorm(mer_cuda *c, void *y_dev, mer_dtype yt, const float *x_dev, const float *w_dev, int n_rows,
                            int n, float eps, mer_err *err);
/* y[i][:] = f32(table[ids[i]][:]); table [n_vocab][n_cols] of dtype tt (bf16 or f32); ids (device) are
 * clamped to range (callers check them on the host). */
mer_status mer_cuda_embed(mer_cuda *c, float *y_dev, const void *table_dev, mer_dtype tt, int64_t n_vocab, int n_cols,
                          const int32_t *ids_dev, int n, mer_err *err);
/* Converts n floats to bf16 (round to nearest even). */
mer_status mer_cuda_f32_to_bf16(mer_cuda *c, uint16_t *y_dev, const float *x_dev, size_t n, mer_err *err);
/* y[i] = a[i] + b[i] (y may equal a or b). */
mer_status mer_cuda_add(mer_cuda *c, float *y_dev, const float *a_dev, const float *b_dev, size_t n,
                        mer_err *err);
/* y[r][:] += b[:] for r < n_rows (a bias broadcast). */
mer_status mer_cuda_add_bias(mer_cuda *c, float *y_dev, const float *b_dev, int n_rows, int n, mer_err *err);
/* h[t][i] = silu(g) * u with g = gu[t][i], u = gu[t][n_ff + i] (gu [n_tok][2 n_ff], h [n_tok][n_ff], both
 * of dtype t). */
mer_status mer_cuda_silu_mul(mer_cuda *c, void *h_dev, const void *gu_dev, mer_dtype t, int n_tok, int n_ff,
                             mer_err *err);

/* The attention input step of a Qwen2/LLaMA layer, fused: qkv f32 [n_tok][(H + 2 KV) d] (q heads, then
 * k heads, then v heads, as one fused projection writes them) plus bias ([(H + 2 KV) d], or NULL); RoPE
 * NeoX (rotate_half) on q and k with angle pos[t] * inv_freq[i] in f32 (inv_freq [d/2], device); q is
 * written as [n_tok][H][d]; k and v are stored in the caches at (slot[t], head, pos[t]); q and caches of
 * dtype t. pos and slot are device arrays [n_tok] (read on the device, so a captured graph can be re-run
 * with new values). */
mer_status mer_cuda_qkv_rope(mer_cuda *c, const float *qkv_dev, const float *bias_dev, const float *inv_freq_dev,
                             void *q_dev, void *k_cache_dev, void *v_cache_dev, mer_dtype t, const int32_t *pos_dev,
                             const int32_t *slot_dev, int n_tok, int n_head, int n_kv_head, int d, int n_ctx,
                             mer_err *err);

/* Decode attention: token t (a query at position pos[t] of sequence slot[t]) attends to keys
 * 0..pos[t] of its slot, split over `n_split` chunks of keys that run in parallel and are merged by the
 * last chunk to finish (flash-decoding, one launch; 1 <= n_split <= 32). Any d that is a multiple of 8 up
 * to 256; q, caches
 * and out of dtype t. ws: device workspace of mer_cuda_attn_decode_ws(n_tok, n_head, d, n_split) bytes
 * (NULL for n_split == 1), zeroed once before its first use (the kernel leaves it zeroed). */
size_t mer_cuda_attn_decode_ws(int n_tok, int n_head, int d, int n_split);
mer_status mer_cuda_attn_decode(mer_cuda *c, void *out_dev, const void *q_dev, const void *k_cache_dev,
                                const void *v_cache_dev, mer_dtype t, const int32_t *pos_dev, const int32_t *slot_dev,
                                int n_tok, int n_head, int n_kv_head, int d, int n_ctx, int n_split, float scale,
                                void *ws_dev, mer_err *err);
/* Decode attention fused with the layer's input step: instead of q, the f32 projection qkv
 * [n_tok][(H + 2 KV) d] (+ bias, may be NULL) as mer_cuda_qkv_rope takes it; RoPE is applied to q on the
 * fly (kept in f32) and the new key and value of each token are stored in the caches at (slot[t],
 * pos[t]) before they are attended to. Replaces mer_cuda_qkv_rope + mer_cuda_attn_decode. */
mer_status mer_cuda_attn_decode_rope(mer_cuda *c, void *out_dev, const float *qkv_dev, const float *bias_dev,
                                     const float *inv_freq_dev, void *k_cache_dev, void *v_cache_dev, mer_dtype t,
                                     const int32_t *pos_dev, const int32_t *slot_dev, int n_tok, int n_head,
                                     int n_kv_head, int d, int n_ctx, int n_split, float scale, void *ws_dev,
                                     mer_err *err);
/* Prefill attention (causal): n_tok queries of one sequence `slot` at positions pos0 .. pos0+n_tok-1
 * attend to keys 0..pos0+t of that slot (the caller stored them first). Flash-attention-2 style on the
 * tensor cores for bf16 and d = 64 or 128 (query rows of all heads of a KV group share each K/V tile);
 * other cases run the decode kernel (pos_dev, slot_dev: the same positions and slot as device arrays). */
mer_status mer_cuda_attn_prefill(mer_cuda *c, void *out_dev, const void *q_dev, const void *k_cache_dev,
                                 const void *v_cache_dev, mer_dtype t, int slot, int pos0, int n_tok, int n_head,
                                 int n_kv_head, int d, int n_ctx, float scale, const int32_t *pos_dev,
                                 const int32_t *slot_dev, mer_err *err);

/* Matmul output modes. */
typedef enum mer_cuda_epi {
    MER_CUDA_EPI_F32 = 0,     /* y f32 [n_tok][ldy] = x W^T */
    MER_CUDA_EPI_F32_ADD = 1, /* y f32 += x W^T (a residual add) */
    MER_CUDA_EPI_BF16 = 2,    /* y bf16 = x W^T (bf16 weights only) */
    MER_CUDA_EPI_SILU = 3     /* W holds [gate; up] (n_out = 2 n_ff rows): y [n_tok][n_ff] = silu(x gate^T) *
                                 (x up^T), in the dtype of x */
} mer_cuda_epi;

/* y = x @ W^T in the mode `epi`: W [n_out][n_in] contiguous of dtype wt, x [n_tok][n_in] (row stride
 * ldx) of the same dtype, f32 accumulation, ldy the row stride of y in elements. wt bf16: n_in a multiple
 * of 8; up to 8 rows run a GEMV on the tensor cores that streams W once (the decode path), more run
 * cuBLASLt. wt f32: cuBLASLt in full f32 (no TF32), n_in a multiple of 4. Pointers 16-byte aligned.
 * The silu mode on cuBLASLt takes a scratch block from the allocator. */
mer_status mer_cuda_matmul(mer_cuda *c, void *y_dev, int ldy, const void *x_dev, int ldx, const void *w_dev,
                           mer_dtype wt, int n_tok, int n_in, int n_out, mer_cuda_epi epi, mer_err *err);
/* Whether mer_cuda_matmul runs the GEMV (no allocation: fine inside graph capture) for these. */
int mer_cuda_matmul_uses_gemv(const mer_cuda *c, mer_dtype wt, int n_tok);
/* The same through cuBLASLt whatever n_tok (for tests and benchmarks). */
mer_status mer_cuda_matmul_cublas(mer_cuda *c, void *y_dev, int ldy, const void *x_dev, int ldx, const void *w_dev,
                                  mer_dtype wt, int n_tok, int n_in, int n_out, mer_cuda_epi epi, mer_err *err);
/* The bf16 GEMV whatever the options (n_tok <= 8; for tests and benchmarks). */
mer_status mer_cuda_matmul_gemv(mer_cuda *c, void *y_dev, int ldy, const uint16_t *x_dev, int ldx,
                                const uint16_t *w_dev, int n_tok, int n_in, int n_out, mer_cuda_epi epi,
                                mer_err *err);

/* out[r] = index of the largest of x[r][0..n) (the first one on ties, as torch.argmax). */
mer_status mer_cuda_argmax(mer_cuda *c, int32_t *out_dev, const float *x_dev, int n_rows, int n, mer_err *err);

/* Fills n bf16 with uniform values in [-a, a) from a counter-based hash of (seed, index). */
mer_status mer_cuda_fill_uniform_bf16(mer_cuda *c, uint16_t *p_dev, size_t n, uint64_t seed, float a, mer_err *err);
/* The same for f32, centred on `mean`: mean + [-a, a). */
mer_status mer_cuda_fill_uniform_f32(mer_cuda *c, float *p_dev, size_t n, uint64_t seed, float mean, float a,
                                     mer_err *err);

#ifdef __cplusplus
}
#endif

#endif
