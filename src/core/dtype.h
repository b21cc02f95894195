/* dtype.h - element types of tensors. The block types q8_0 and q4_0 have GGUF's exact byte layouts:
 * 32 elements per block, an f16 scale `d` first, then 32 int8 (q8_0) or 16 bytes of packed nibbles
 * (q4_0: element j in the low nibble of byte j, element j+16 in the high nibble; value = (q - 8) * d).
 * The numeric values of the enum equal GGUF's ggml_type codes so files can store them as they are. */
#ifndef MER_DTYPE_H
#define MER_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum mer_dtype {
    MER_DTYPE_F32 = 0,
    MER_DTYPE_F16 = 1,
    MER_DTYPE_Q4_0 = 2,
    MER_DTYPE_Q8_0 = 8,
    MER_DTYPE_I8 = 24,
    MER_DTYPE_I16 = 25,
    MER_DTYPE_I32 = 26,
    MER_DTYPE_I64 = 27,
    MER_DTYPE_F64 = 28,
    MER_DTYPE_BF16 = 30,
    MER_DTYPE_U8 = 200,   /* not a GGUF type: numpy/torch uint8 */
    MER_DTYPE_BOOL = 201, /* not a GGUF type */
    MER_DTYPE_INVALID = -1,
} mer_dtype;

#define MER_QK 32 /* elements per q8_0 / q4_0 block */

typedef struct mer_block_q8_0 {
    uint16_t d; /* f16 scale */
    int8_t qs[MER_QK];
} mer_block_q8_0; /* 34 bytes */

typedef struct mer_block_q4_0 {
    uint16_t d;            /* f16 scale */
    uint8_t qs[MER_QK / 2]; /* nibbles */
} mer_block_q4_0; /* 18 bytes */

/* Name as GGUF/llama.cpp spell it ("f32", "bf16", "q8_0"...), or "invalid". */
const char *mer_dtype_name(mer_dtype t);
/* Parses a name as printed by mer_dtype_name; MER_DTYPE_INVALID if unknown. */
mer_dtype mer_dtype_from_name(const char *name);
/* Elements per block (1 for plain types, 32 for q8_0/q4_0) and bytes per block; 0 if invalid. */
size_t mer_dtype_block_elems(mer_dtype t);
size_t mer_dtype_block_bytes(mer_dtype t);
/* Bytes for a row of n elements (n must be a multiple of the block size); 0 if invalid. Overflow is
 * the caller's to check with the sizes it trusts. */
size_t mer_dtype_row_bytes(mer_dtype t, size_t n);

// --- scalar conversions and row (de)quantisation (implemented in src/core/dtype.c) -------------------

float mer_fp16_to_fp32(uint16_t h);
uint16_t mer_fp32_to_fp16(float f);   /* round to nearest even, like numpy/torch */
float mer_bf16_to_fp32(uint16_t h);
uint16_t mer_fp32_to_bf16(float f);   /* round to nearest even, NaN kept NaN, like torch */

/* Converts n elements of src (type t) to f32. n must be a multiple of the block size. */
void mer_dequantize_row(mer_dtype t, const void *src, float *dst, size_t n);
/* Converts n f32 to type t (f32, f16, bf16, q8_0, q4_0) with the rounding llama.cpp's reference
 * quantisers use (q8_0: d = amax/127, q = round(x/d); q4_0: d = max/-8 by signed max-magnitude,
 * q = min(15, (int8)(x/d + 8.5))). n must be a multiple of the block size. Returns 0, or -1 if t
 * cannot be a quantisation target. */
int mer_quantize_row(mer_dtype t, const float *src, void *dst, size_t n);

#endif
