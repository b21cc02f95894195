/* cuda_backend.cu - the CUDA context: device selection, the stream, error reporting, the caching
 * allocator, transfers, graph capture, event timing, and the matmul dispatcher (the tensor-core GEMV of
 * cuda_gemv.cu for up to 8 rows, cuBLASLt with cached per-shape plans above). */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_internal.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// --- errors ------------------------------------------------------------------------------------------

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

mer_status mer__cu_fail(mer_err *err, cudaError_t e, const char *what, const char *file, int line) {
    return mer__errf(err, MER_E_DEVICE, "%s:%d: %s: %s (%s)", base_name(file), line, what, cudaGetErrorName(e),
                     cudaGetErrorString(e));
}

mer_status mer__cublas_fail(mer_err *err, cublasStatus_t s, const char *what, const char *file, int line) {
    return mer__errf(err, MER_E_DEVICE, "%s:%d: %s: %s", base_name(file), line, what, cublasGetStatusString(s));
}

// --- devices and the context -------------------------------------------------------------------------

int mer_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

static int env_int(const char *name, int def) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : def;
}

mer_status mer_cuda_init(int device, mer_cuda **out, mer_err *err) {
    *out = NULL;
    int n = mer_cuda_device_count();
    if (device < 0 || device >= n)
        return mer__errf(err, MER_E_DEVICE, "cuda: device %d requested, %d present", device, n);
    mer_cuda *c = (mer_cuda *)calloc(1, sizeof *c);
    if (!c) return mer__errf(err, MER_E_NOMEM, "cuda: out of host memory");
    mer_status st;
    c->device = device;
    {
        cudaError_t e = cudaSetDevice(device);
        if (e != cudaSuccess) { st = mer__cu_fail(err, e, "cudaSetDevice", __FILE__, __LINE__); goto fail; }
        cudaDeviceProp prop;
        e = cudaGetDeviceProperties(&prop, device);
        if (e != cudaSuccess) { st = mer__cu_fail(err, e, "cudaGetDeviceProperties", __FILE__, __LINE__); goto fail; }
        c->n_sm = prop.multiProcessorCount;
        c->smem_optin = prop.sharedMemPerBlockOptin;
        snprintf(c->name, sizeof c->name, "%s, %d SMs, cc %d.%d, %.1f GiB", prop.name, prop.multiProcessorCount,
                 prop.major, prop.minor, (double)prop.totalGlobalMem / (1024.0 * 1024 * 1024));
        e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
        if (e != cudaSuccess) { st = mer__cu_fail(err, e, "cudaStreamCreate", __FILE__, __LINE__); goto fail; }
        e = cudaEventCreate(&c->ev0);
        if (e == cudaSuccess) e = cudaEventCreate(&c->ev1);
        if (e != cudaSuccess) { st = mer__cu_fail(err, e, "cudaEventCreate", __FILE__, __LINE__); goto fail; }
        cublasStatus_t s = cublasLtCreate(&c->lt);
        if (s != CUBLAS_STATUS_SUCCESS) { c->lt = NULL; st = mer__cublas_fail(err, s, "cublasLtCreate", __FILE__, __LINE__); goto fail; }
        c->lt_ws_size = 32u << 20;
        e = cudaMalloc(&c->lt_ws, c->lt_ws_size);
        if (e != cudaSuccess) { c->lt_ws = NULL; st = mer__cu_fail(err, e, "cudaMalloc(workspace)", __FILE__, __LINE__); goto fail; }
    }
    c->use_pdl = env_int("MER_CUDA_PDL", 0) != 0;
    c->gemv_tile = env_int("MER_CUDA_GEMV_TILE", 0);
    c->gemv_nw = env_int("MER_CUDA_GEMV_NW", 0);
    {
        const char *g = getenv("MER_CUDA_GEMM");
        c->gemm_mode = (g && strcmp(g, "cublas") == 0) ? MER_CUDA_GEMM_CUBLAS : MER_CUDA_GEMM_AUTO;
    }
    *out = c;
    return MER_OK;
fail:
    mer_cuda_free(c);
    return st;
}

void mer_cuda_free(mer_cuda *c) {
    if (!c) return;
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    for (int i = 0; i < c->n_plans; i++) {
        mer__lt_plan *p = &c->plans[i];
        if (p->op) cublasLtMatmulDescDestroy(p->op);
        if (p->la) cublasLtMatrixLayoutDestroy(p->la);
        if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
        if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
    }
    for (size_t i = 0; i < c->n_blocks; i++) cudaFree(c->blocks[i].p);
    free(c->blocks);
    if (c->lt_ws) cudaFree(c->lt_ws);
    if (c->lt) cublasLtDestroy(c->lt);
    if (c->ev0) cudaEventDestroy(c->ev0);
    if (c->ev1) cudaEventDestroy(c->ev1);
    if (c->stream) cudaStreamDestroy(c->stream);
    (void)cudaGetLastError();
    free(c);
}

const char *mer_cuda_name(const mer_cuda *c) { return c->name; }
int mer_cuda_sm_count(const mer_cuda *c) { return c->n_sm; }
void mer_cuda_set_pdl(mer_cuda *c, int on) { c->use_pdl = on != 0; }
int mer_cuda_get_pdl(const mer_cuda *c) { return c->use_pdl; }
void mer_cuda_set_gemm_mode(mer_cuda *c, int mode) { c->gemm_mode = mode; }
void mer_cuda_set_gemv_tile(mer_cuda *c, int tile) { c->gemv_tile = tile == 1 || tile == 2 ? tile : 0; }
void mer_cuda_set_gemv_warps(mer_cuda *c, int nw) { c->gemv_nw = nw == 4 || nw == 8 || nw == 16 ? nw : 0; }
void *mer_cuda_stream(mer_cuda *c) { return (void *)c->stream; }

mer_status mer_cuda_sync(mer_cuda *c, mer_err *err) {
    MER_CU(cudaStreamSynchronize(c->stream));
    MER_CU(cudaGetLastError());
    return MER_OK;
}

mer_status mer_cuda_mem_info(mer_cuda *c, size_t *free_b, size_t *total_b, mer_err *err) {
    (void)c;
    MER_CU(cudaMemGetInfo(free_b, total_b));
    return MER_OK;
}

// --- caching allocator -------------------------------------------------------------------------------

static size_t bucket_size(size_t n) {
    if (n < (1u << 20)) {
        size_t b = 256;
        while (b < n) b <<= 1;
        return b;
    }
    const size_t g = 2u << 20;
    return (n + g - 1) / g * g;
}

mer_status mer_cuda_alloc(mer_cuda *c, size_t n, void **out, mer_err *err) {
    *out = NULL;
    if (n == 0) return MER_OK;
    if (n > ((size_t)1 << 46)) return mer__errf(err, MER_E_RANGE, "cuda: allocation of %zu bytes", n);
    size_t want = bucket_size(n);
    size_t best = (size_t)-1;
    for (size_t i = 0; i < c->n_blocks; i++) {
        mer__cu_block *b = &c->blocks[i];
        if (!b->in_use && b->size >= want && b->size / 2 <= want && (best == (size_t)-1 || b->size < c->blocks[best].size))
            best = i;
    }
    if (best != (size_t)-1) {
        c->blocks[best].in_use = 1;
        c->in_use += c->blocks[best].size;
        *out = c->blocks[best].p;
        return MER_OK;
    }
    if (c->n_blocks == c->cap_blocks) {
        size_t cap = c->cap_blocks ? c->cap_blocks * 2 : 64;
        mer__cu_block *nb = (mer__cu_block *)realloc(c->blocks, cap * sizeof *nb);
        if (!nb) return mer__errf(err, MER_E_NOMEM, "cuda: out of host memory");
        c->blocks = nb;
        c->cap_blocks = cap;
    }
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, want);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        mer_status st = mer_cuda_trim(c, err);
        if (st) return st;
        e = cudaMalloc(&p, want);
    }
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        return mer__errf(err, MER_E_DEVICE, "cuda_backend.cu: cudaMalloc(%zu bytes): %s (%s); %zu of %zu bytes free",
                         want, cudaGetErrorName(e), cudaGetErrorString(e), fr, tot);
    }
    mer__cu_block *b = &c->blocks[c->n_blocks++];
    b->p = p;
    b->size = want;
    b->in_use = 1;
    c->held += want;
    c->in_use += want;
    *out = p;
    return MER_OK;
}

void mer_cuda_release(mer_cuda *c, void *p) {
    if (!p) return;
    for (size_t i = 0; i < c->n_blocks; i++) {
        if (c->blocks[i].p == p) {
            MER_ASSERT(c->blocks[i].in_use);
            c->blocks[i].in_use = 0;
            c->in_use -= c->blocks[i].size;
            return;
        }
    }
    MER_ASSERT(!"mer_cuda_release: pointer not from this context");
}

mer_status mer_cuda_trim(mer_cuda *c, mer_err *err) {
    MER_CU(cudaStreamSynchronize(c->stream));
    size_t j = 0;
    for (size_t i = 0; i < c->n_blocks; i++) {
        if (c->blocks[i].in_use) {
            c->blocks[j++] = c->blocks[i];
        } else {
            c->held -= c->blocks[i].size;
            MER_CU(cudaFree(c->blocks[i].p));
        }
    }
    c->n_blocks = j;
    return MER_OK;
}

void mer_cuda_alloc_stats(const mer_cuda *c, size_t *held, size_t *in_use) {
    if (held) *held = c->held;
    if (in_use) *in_use = c->in_use;
}

mer_status mer_cuda_host_alloc(size_t n, void **out, mer_err *err) {
    *out = NULL;
    MER_CU(cudaMallocHost(out, n ? n : 1));
    return MER_OK;
}

void mer_cuda_host_free(void *p) {
    if (p) cudaFreeHost(p);
}

// --- transfers ---------------------------------------------------------------------------------------

mer_status mer_cuda_upload(mer_cuda *c, void *dst_dev, const void *src, size_t n, mer_err *err) {
    if (!n) return MER_OK;
    MER_CU(cudaMemcpyAsync(dst_dev, src, n, cudaMemcpyHostToDevice, c->stream));
    MER_CU(cudaStreamSynchronize(c->stream));
    return MER_OK;
}

mer_status mer_cuda_download(mer_cuda *c, void *dst, const void *src_dev, size_t n, mer_err *err) {
    if (!n) return MER_OK;
    MER_CU(cudaMemcpyAsync(dst, src_dev, n, cudaMemcpyDeviceToHost, c->stream));
    MER_CU(cudaStreamSynchronize(c->stream));
    return MER_OK;
}

mer_status mer_cuda_upload_async(mer_cuda *c, void *dst_dev, const void *src_pinned, size_t n, mer_err *err) {
    if (!n) return MER_OK;
    MER_CU(cudaMemcpyAsync(dst_dev, src_pinned, n, cudaMemcpyHostToDevice, c->stream));
    return MER_OK;
}

mer_status mer_cuda_download_async(mer_cuda *c, void *dst_pinned, const void *src_dev, size_t n, mer_err *err) {
    if (!n) return MER_OK;
    MER_CU(cudaMemcpyAsync(dst_pinned, src_dev, n, cudaMemcpyDeviceToHost, c->stream));
    return MER_OK;
}

mer_status mer_cuda_copy_d2d(mer_cuda *c, void *dst_dev, const void *src_dev, size_t n, mer_err *err) {
    if (!n) return MER_OK;
    MER_CU(cudaMemcpyAsync(dst_dev, src_dev, n, cudaMemcpyDeviceToDevice, c->stream));
    return MER_OK;
}

mer_status mer_cuda_memset(mer_cuda *c, void *dst_dev, int byte, size_t n, mer_err *err) {
    if (!n) return MER_OK;
    MER_CU(cudaMemsetAsync(dst_dev, byte, n, c->stream));
    return MER_OK;
}

// --- graphs and timing -------------------------------------------------------------------------------

mer_status mer_cuda_begin_capture(mer_cuda *c, mer_err *err) {
    MER_CU(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    return MER_OK;
}

mer_status mer_cuda_end_capture(mer_cuda *c, int failed, mer_cuda_graph **out, mer_err *err) {
    *out = NULL;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &g);
    if (failed) {
        if (g) cudaGraphDestroy(g);
        (void)cudaGetLastError();
        return MER_OK;
    }
    if (e != cudaSuccess) return mer__cu_fail(err, e, "cudaStreamEndCapture", __FILE__, __LINE__);
    mer_cuda_graph *mg = (mer_cuda_graph *)calloc(1, sizeof *mg);
    if (!mg) {
        cudaGraphDestroy(g);
        return mer__errf(err, MER_E_NOMEM, "cuda: out of host memory");
    }
    e = cudaGraphInstantiate(&mg->exec, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        free(mg);
        return mer__cu_fail(err, e, "cudaGraphInstantiate", __FILE__, __LINE__);
    }
    *out = mg;
    return MER_OK;
}

mer_status mer_cuda_graph_launch(mer_cuda *c, mer_cuda_graph *g, mer_err *err) {
    MER_CU(cudaGraphLaunch(g->exec, c->stream));
    return MER_OK;
}

void mer_cuda_graph_free(mer_cuda_graph *g) {
    if (!g) return;
    cudaGraphExecDestroy(g->exec);
    free(g);
}

mer_status mer_cuda_time(mer_cuda *c, mer_status (*fn)(void *ud, mer_err *err), void *ud, double *ms,
                         mer_err *err) {
    MER_CU(cudaEventRecord(c->ev0, c->stream));
    mer_status st = fn(ud, err);
    if (st) return st;
    MER_CU(cudaEventRecord(c->ev1, c->stream));
    MER_CU(cudaEventSynchronize(c->ev1));
    float t = 0;
    MER_CU(cudaEventElapsedTime(&t, c->ev0, c->ev1));
    *ms = t;
    return MER_OK;
}

// --- matmul ------------------------------------------------------------------------------------------

/* D[m x n] (col-major, ldc) = A^T B (+ D when beta1), A = W viewed col-major [k x m] (lda), B = x^T viewed
 * col-major [k x n] (ldb). */
static mer_status lt_plan(mer_cuda *c, int m, int n, int k, int lda, int ldb, int ldc, int dtype_d, int beta1,
                          int f32in, mer__lt_plan **out, mer_err *err) {
    for (int i = 0; i < c->n_plans; i++) {
        mer__lt_plan *p = &c->plans[i];
        if (p->m == m && p->n == n && p->k == k && p->lda == lda && p->ldb == ldb && p->ldc == ldc &&
            p->dtype_d == dtype_d && p->beta1 == beta1 && p->f32in == f32in) {
            *out = p;
            return MER_OK;
        }
    }
    if (c->n_plans == MER__LT_PLANS) {  // recycle the oldest
        mer__lt_plan *p = &c->plans[0];
        cublasLtMatmulDescDestroy(p->op);
        cublasLtMatrixLayoutDestroy(p->la);
        cublasLtMatrixLayoutDestroy(p->lb);
        cublasLtMatrixLayoutDestroy(p->lc);
        memmove(&c->plans[0], &c->plans[1], (MER__LT_PLANS - 1) * sizeof c->plans[0]);
        c->n_plans--;
    }
    mer__lt_plan *p = &c->plans[c->n_plans];
    memset(p, 0, sizeof *p);
    p->m = m; p->n = n; p->k = k; p->lda = lda; p->ldb = ldb; p->ldc = ldc; p->dtype_d = dtype_d; p->beta1 = beta1;
    p->f32in = f32in;
    const cudaDataType_t at = f32in ? CUDA_R_32F : CUDA_R_16BF;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cudaDataType_t dt = dtype_d ? CUDA_R_16BF : CUDA_R_32F;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res;
    int n_res = 0;
    mer_status st = MER_OK;
#define LT(call)                                                                                   \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS) { st = mer__cublas_fail(err, s_, #call, __FILE__, __LINE__); goto fail; } \
    } while (0)
    LT(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    LT(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    LT(cublasLtMatrixLayoutCreate(&p->la, at, k, m, lda));
    LT(cublasLtMatrixLayoutCreate(&p->lb, at, k, n, ldb));
    LT(cublasLtMatrixLayoutCreate(&p->lc, dt, m, n, ldc));
    LT(cublasLtMatmulPreferenceCreate(&pref));
    LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &c->lt_ws_size,
                                            sizeof c->lt_ws_size));
    LT(cublasLtMatmulAlgoGetHeuristic(c->lt, p->op, p->la, p->lb, p->lc, p->lc, pref, 1, &res, &n_res));
    if (n_res < 1) {
        st = mer__errf(err, MER_E_UNSUPPORTED, "cuda_backend.cu: cuBLASLt has no algorithm for %dx%dx%d", m, n, k);
        goto fail;
    }
    p->algo = res.algo;
    p->ok = 1;
    cublasLtMatmulPreferenceDestroy(pref);
    c->n_plans++;
    *out = p;
    return MER_OK;
#undef LT
fail:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (p->op) cublasLtMatmulDescDestroy(p->op);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
    memset(p, 0, sizeof *p);
    return st;
}

static mer_status check_mm(void *y, int ldy, const void *x, int ldx, const void *w, mer_dtype wt, int n_tok, int n_in,
                           int n_out, mer_cuda_epi epi, mer_err *err) {
    const int n_y = epi == MER_CUDA_EPI_SILU ? n_out / 2 : n_out;
    const int vec = wt == MER_DTYPE_F32 ? 4 : 8; /* elements in 16 bytes */
    if (wt != MER_DTYPE_BF16 && wt != MER_DTYPE_F32)
        return mer__errf(err, MER_E_UNSUPPORTED, "cuda matmul: weights of dtype %s (bf16 or f32)", mer_dtype_name(wt));
    if (n_tok < 1 || n_in < vec || n_out < 1 || n_in % vec || ldx < n_in || ldy < n_y ||
        (epi == MER_CUDA_EPI_SILU && n_out % 2) || (int)epi < 0 || (int)epi > 3 ||
        (epi == MER_CUDA_EPI_BF16 && wt != MER_DTYPE_BF16))
        return mer__errf(err, MER_E_ARG, "cuda matmul: bad sizes (n_tok %d, n_in %d, n_out %d, ldx %d, ldy %d, epi %d)",
                         n_tok, n_in, n_out, ldx, ldy, (int)epi);
    if (((uintptr_t)x | (uintptr_t)w | (uintptr_t)y) & 15 || ldx % vec)
        return mer__errf(err, MER_E_ARG, "cuda matmul: operands must be 16-byte aligned");
    return MER_OK;
}

mer_status mer_cuda_matmul_cublas(mer_cuda *c, void *y, int ldy, const void *x, int ldx, const void *w, mer_dtype wt,
                                  int n_tok, int n_in, int n_out, mer_cuda_epi epi, mer_err *err) {
    mer_status st = check_mm(y, ldy, x, ldx, w, wt, n_tok, n_in, n_out, epi, err);
    if (st) return st;
    const int f32in = wt == MER_DTYPE_F32;
    if (epi == MER_CUDA_EPI_SILU) {
        void *tmp = NULL;
        st = mer_cuda_alloc(c, (size_t)n_tok * n_out * (f32in ? 4 : 2), &tmp, err);
        if (st) return st;
        st = mer_cuda_matmul_cublas(c, tmp, n_out, x, ldx, w, wt, n_tok, n_in, n_out,
                                    f32in ? MER_CUDA_EPI_F32 : MER_CUDA_EPI_BF16, err);
        if (!st) st = mer__silu_mul_ld(c, y, ldy, tmp, wt, n_tok, n_out / 2, err);
        mer_cuda_release(c, tmp);
        return st;
    }
    const int dt = epi == MER_CUDA_EPI_BF16;
    const int beta1 = epi == MER_CUDA_EPI_F32_ADD;
    mer__lt_plan *p = NULL;
    st = lt_plan(c, n_out, n_tok, n_in, n_in, ldx, ldy, dt, beta1, f32in, &p, err);
    if (st) return st;
    float alpha = 1.0f, beta = beta1 ? 1.0f : 0.0f;
    MER_CUBLAS(cublasLtMatmul(c->lt, p->op, &alpha, w, p->la, x, p->lb, &beta, y, p->lc, y, p->lc, &p->algo, c->lt_ws,
                              c->lt_ws_size, c->stream));
    return MER_OK;
}

mer_status mer_cuda_matmul_gemv(mer_cuda *c, void *y, int ldy, const uint16_t *x, int ldx, const uint16_t *w,
                                int n_tok, int n_in, int n_out, mer_cuda_epi epi, mer_err *err) {
    mer_status st = check_mm(y, ldy, x, ldx, w, MER_DTYPE_BF16, n_tok, n_in, n_out, epi, err);
    if (st) return st;
    if (n_tok > MER__GEMV_MAX_TOK)
        return mer__errf(err, MER_E_ARG, "cuda gemv: %d rows (at most %d)", n_tok, MER__GEMV_MAX_TOK);
    return mer__gemv(c, y, ldy, x, ldx, w, n_tok, n_in, n_out, epi, err);
}

int mer_cuda_matmul_uses_gemv(const mer_cuda *c, mer_dtype wt, int n_tok) {
    return wt == MER_DTYPE_BF16 && n_tok <= MER__GEMV_MAX_TOK && c->gemm_mode != MER_CUDA_GEMM_CUBLAS;
}

mer_status mer_cuda_matmul(mer_cuda *c, void *y, int ldy, const void *x, int ldx, const void *w, mer_dtype wt,
                           int n_tok, int n_in, int n_out, mer_cuda_epi epi, mer_err *err) {
    if (mer_cuda_matmul_uses_gemv(c, wt, n_tok))
        return mer_cuda_matmul_gemv(c, y, ldy, (const uint16_t *)x, ldx, (const uint16_t *)w, n_tok, n_in, n_out, epi,
                                    err);
    return mer_cuda_matmul_cublas(c, y, ldy, x, ldx, w, wt, n_tok, n_in, n_out, epi, err);
}
