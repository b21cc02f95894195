/* video.h - video frames through the FFmpeg libraries (libavformat, libavcodec, libswscale): open any
 * container and codec FFmpeg reads, count its frames, decode frame i (or a list of indices) to packed
 * RGB24, optionally resized with swscale's bilinear filter. The public API is in mer.h (mer_video_*);
 * this header is what the pipeline includes. Compiled only when the build finds FFmpeg (MER_MEDIA=1).
 *
 * Frame numbering. Frame i is the i-th frame in presentation order. At open, the whole file is demuxed
 * (no decoding) and every packet of the video stream is counted (packets flagged for discard, as
 * outside an MP4 edit list, are not), so n_frames is exact for the usual one-frame-per-packet codecs.
 * When every packet carries a distinct timestamp, frame i is found by seeking to the last keyframe at
 * or before its timestamp and decoding forward to it; otherwise (raw streams without timestamps)
 * frames are counted as they come out of the decoder from the start of the file.
 *
 * Colours: the frame's own colour matrix and range (BT.601 when unspecified) as swscale takes them, the
 * same conversion the ffmpeg command line makes with `-sws_flags bilinear -pix_fmt rgb24` (tests/
 * test_video.c checks that byte for byte). Frames come as stored: a display-rotation tag (phone videos)
 * is not applied, as AffectGPT's decord does not apply it. Opening a video sets FFmpeg's log level to
 * quiet (FFmpeg's own global), so decoder warnings do not reach stderr. */
#ifndef MER_MEDIA_VIDEO_H
#define MER_MEDIA_VIDEO_H

#include "core/core.h"

#endif
