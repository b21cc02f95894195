/* clip_preprocess.h - image input for the CLIP encoder, bit-compatible with the Python stack AffectGPT
 * runs:
 *  - mer_image_load: JPEG (by the system libjpeg-turbo, Pillow's decoder, when present), PNG / BMP / TGA /
 *    GIF (first frame) / PNM (and JPEG without libjpeg) by stb_image, to 8-bit RGB.
 *  - mer_resize_pil_bicubic: Pillow's Image.resize(..., BICUBIC) on uint8 RGB (Resample.c: separable
 *    convolution, cubic a = -0.5 whose support is scaled by the downscale factor, coefficients in 22-bit
 *    fixed point, horizontal pass then vertical pass, each rounded and clipped to uint8).
 *  - mer_resize_cv_linear: OpenCV's cv::resize(..., INTER_LINEAR) on uint8 (11-bit fixed-point weights,
 *    the vertical pass' 16-bit rounding, and the exact 2x downscale that OpenCV turns into INTER_AREA),
 *    which AffectGPT applies to face crops (cv2.resize(face, (224, 224))).
 *  - mer_clip_preprocess: HF CLIPImageProcessor: shortest side to `size` (PIL bicubic, long side
 *    int(size * long / short)), center crop, x / 255, (x - mean) / std, channels first.
 * All functions are pure and thread-safe. */
#ifndef MER_MODELS_CLIP_PREPROCESS_H
#define MER_MODELS_CLIP_PREPROCESS_H

#include "core/core.h"

/* CLIP's normalisation constants (OpenAI). */
#define MER_CLIP_MEAN_R 0.48145466f
#define MER_CLIP_MEAN_G 0.4578275f
#define MER_CLIP_MEAN_B 0.40821073f
#define MER_CLIP_STD_R 0.26862954f
#define MER_CLIP_STD_G 0.26130258f
#define MER_CLIP_STD_B 0.27577711f

/* Largest image (in pixels) mer_image_load decodes: 2^26 (64 Mpixel). */
#define MER_IMAGE_MAX_PIXELS (1L << 26)

/* Decodes the image file at path to 8-bit RGB, row-major [h][w][3] (grey and alpha images are converted:
 * grey replicated, alpha dropped; EXIF orientation is not applied, as PIL's Image.open does not).
 * Caller frees *rgb with free(). MER_E_IO / MER_E_FORMAT naming the file. */
mer_status mer_image_load(const char *path, uint8_t **rgb, int *w, int *h, mer_err *err);
/* Same over a buffer; name is used in messages. */
mer_status mer_image_decode(const char *name, const uint8_t *data, size_t n, uint8_t **rgb, int *w, int *h,
                            mer_err *err);

/* Internal (image_jpeg.c): decodes a JPEG with the system libjpeg-turbo, as Pillow does. Returns 1 when
 * decoded, 0 when libjpeg is unavailable or the file is not a JPEG it handles here (CMYK: left to
 * stb_image), -1 on error (err set). */
int mer__jpeg_decode(const char *name, const uint8_t *data, size_t n, uint8_t **rgb, int *w, int *h, mer_err *err);

/* Pillow's resize of a uint8 image with `ch` interleaved channels (1..4) from [sh][sw] to [dh][dw]
 * (BICUBIC, no reducing_gap). dst must not overlap src. Returns MER_E_NOMEM, MER_E_ARG (sizes < 1). */
mer_status mer_resize_pil_bicubic(const uint8_t *src, int sw, int sh, int ch, uint8_t *dst, int dw, int dh,
                                  mer_err *err);

/* OpenCV's cv::resize(src, (dw, dh), interpolation=INTER_LINEAR) for uint8 with ch interleaved channels
 * (OpenCV 4.x). Returns MER_E_NOMEM, MER_E_ARG. */
mer_status mer_resize_cv_linear(const uint8_t *src, int sw, int sh, int ch, uint8_t *dst, int dw, int dh,
                                mer_err *err);

/* The resized size of HF's shortest-edge rule: the short side becomes `size`, the long side
 * int(size * long / short). */
void mer_clip_resize_dims(int w, int h, int size, int *ow, int *oh);

/* HF CLIPImageProcessor on an RGB uint8 image [h][w][3]: resize (mer_clip_resize_dims + PIL bicubic),
 * center crop crop x crop (top = (oh - crop) / 2, left = (ow - crop) / 2), then
 * out[c][y][x] = (float(u8 * (1/255)) - mean[c]) / std[c] in f32 as numpy does. out is [3][crop][crop].
 * If resized_u8 is non-NULL it receives the cropped uint8 image [crop][crop][3] (for parity tests).
 * MER_E_ARG when the resized image is smaller than the crop. */
mer_status mer_clip_preprocess(const uint8_t *rgb, int w, int h, int size, int crop, float *out, uint8_t *resized_u8,
                               mer_err *err);

/* uint8 [crop][crop][3] (already the right size) to CLIP's normalised [3][crop][crop]. */
void mer_clip_normalize(const uint8_t *rgb, int crop, float *out);


#endif
