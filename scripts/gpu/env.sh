# scripts/gpu/env.sh - sourced by the GPU machine's scripts (bench/gpu.sh, bench/gpu_enc.sh,
# bench/gpu_pipeline.sh, scripts/gpu/llm_device.sh): the environment and the build of mer with CUDA=1.
# The GPU machine has no FFmpeg development files, so media is left out (MEDIA=0), and Debian's -dev
# libraries the engine links (zlib, cJSON, utf8proc, SQLite) travel in .gpu-deps (scripts/gpu/prep_deps.sh;
# carry it with the run). Must be sourced from the repository root.
MER_GPU_DEPS=$PWD/.gpu-deps/root/usr
MER_GPU_LIBDIR=$MER_GPU_DEPS/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH="$MER_GPU_LIBDIR:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="/usr/local/cuda/bin:$PATH"
export PYTHONUNBUFFERED=1

# mer_gpu_make BUILD_DIR TARGET... : make with CUDA=1 MEDIA=0 (targets relative to the repository root,
# e.g. "$B/mer" "$B/tests/test_cuda" "$B/bench/bench_gpu"); $MER_GPU_DEFS (e.g. -DMER_BENCH_ABLATE) goes
# to both the C and the CUDA compiler.
mer_gpu_make() {
    local b=$1
    shift
    make -j"$(nproc)" CUDA=1 MEDIA=0 DEPS=0 BUILD="$b" EXTRA_CFLAGS="-I$MER_GPU_DEPS/include -Wno-error ${MER_GPU_DEFS:-}" \
        EXTRA_NVFLAGS="${MER_GPU_DEFS:-}" EXTRA_LDLIBS="-L$MER_GPU_LIBDIR" BENCH_LDLIBS= "$@"
}

# mer_gpu_card: the card's name, for every figure's label.
mer_gpu_card() { nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1; }
