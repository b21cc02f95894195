# mer - build. `make` (CPU), `make CUDA=1`, `make test`, `make demo`, `make debug`, `make fuzz`, `make bench`.
# Sources are found by wildcard: a new src/<dir>/<name>.c, tests/test_<name>.c, tests/fuzz/fuzz_<name>.c
# or bench/bench_<name>.c is built with no edit here. SIMD variants are named *_avx2.c / *_avx512.c.

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
CUDA    ?= 0
MEDIA   ?= $(shell pkg-config --exists libavformat libavcodec libswscale libswresample 2>/dev/null && echo 1 || echo 0)
DEPS    ?= 1

WARN     = -Wall -Wextra -Wpedantic -Werror -Wshadow -Wno-unused-parameter
CPPFLAGS = -Iinclude -Isrc -D_GNU_SOURCE -DMER_MEDIA=$(MEDIA) -DMER_CUDA=$(CUDA)
CFLAGS  += -std=c11 $(OPT) -g -pthread -fno-math-errno $(WARN) $(EXTRA_CFLAGS)
LDLIBS   = -lz -lcjson -lutf8proc -lsqlite3 -lm -lpthread $(EXTRA_LDLIBS)

AVX2_FLAGS   = -mavx2 -mfma -mf16c -Wno-overlength-strings
AVX512_FLAGS = -Wno-overlength-strings -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 -mfma -mf16c

SRCS := $(shell find src -name '*.c' | sort)
ifneq ($(MEDIA),1)
SRCS := $(filter-out src/media/%,$(SRCS))
else
LDLIBS += $(shell pkg-config --libs libavformat libavcodec libswscale libswresample libavutil)
endif
CUSRCS :=
ifeq ($(CUDA),1)
CUSRCS := $(shell find src/kernels/cuda -name '*.cu' 2>/dev/null | sort)
NVCC   ?= nvcc
NVFLAGS = -O3 -std=c++17 -Iinclude -Isrc -arch=sm_90a -Xcompiler -fPIC
LDLIBS += -L/usr/local/cuda/lib64 -lcudart -lcublas -lcublasLt -lstdc++
endif

OBJS   := $(SRCS:%.c=$(BUILD)/obj/%.o) $(CUSRCS:%.cu=$(BUILD)/obj/%.o)
TOOLS  := $(shell find tools -name '*.c' | sort)
TESTS  := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_*.c))
BENCHS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/bench_*.c))
# the CPU benchmarks compare against OpenBLAS; the GPU machine has none (scripts/gpu/env.sh empties this)
BENCH_LDLIBS ?= -lopenblas
FUZZS  := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))

# Parallel by default; the installing step (deps) always runs before anything is compiled, because the
# top-level targets build through a sub-make after it.
MAKEFLAGS += --jobs=$(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps bench-deps test demo debug fuzz fuzz-smoke bench clean build-only
all: deps
	@$(MAKE) --no-print-directory build-only
build-only: $(BUILD)/mer

deps:
ifeq ($(DEPS),1)
	@scripts/deps.sh
endif

$(BUILD)/obj/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(AVX2_FLAGS) -MMD -MP -c $< -o $@
$(BUILD)/obj/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(AVX512_FLAGS) -MMD -MP -c $< -o $@
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@
$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) $(EXTRA_NVFLAGS) -DMER_CUDA=1 -MMD -MP -c $< -o $@

$(BUILD)/libmer.a: $(OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/mer: $(TOOLS:%.c=$(BUILD)/obj/%.o) $(BUILD)/libmer.a
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/test.h $(BUILD)/libmer.a
	@mkdir -p $(dir $@) $(BUILD)/test-tmp
	$(CC) $(CPPFLAGS) -DMER_TEST_TMP='"$(BUILD)/test-tmp"' $(CFLAGS) $< $(BUILD)/libmer.a -o $@ $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libmer.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $< $(BUILD)/libmer.a -o $@ $(LDLIBS) $(BENCH_LDLIBS)

test: deps $(BUILD)/mer $(TESTS)
	@scripts/run_tests.sh $(BUILD)

demo: deps $(BUILD)/mer
	scripts/demo.sh $(BUILD)

bench-deps:
ifeq ($(DEPS),1)
	@MER_DEPS_BENCH=1 scripts/deps.sh
endif
bench: bench-deps deps $(BUILD)/mer $(BENCHS)
	@for b in $(BENCHS); do echo "== $$b"; $$b || exit 1; done

# Sanitizer build in its own folder; runs the whole suite.
debug:
	$(MAKE) BUILD=build-debug OPT=-O1 EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

# libFuzzer targets (clang); each links the library built with the fuzzer's instrumentation.
FUZZ_BUILD = build-fuzz
fuzz: deps
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang OPT=-O1 EXTRA_CFLAGS="-fsanitize=fuzzer-no-link,address,undefined -Wno-error=unused-command-line-argument" fuzz-bins
fuzz-bins: $(FUZZS)
$(BUILD)/fuzz/%: tests/fuzz/%.c $(BUILD)/libmer.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fsanitize=fuzzer $< $(BUILD)/libmer.a -o $@ $(LDLIBS)
# Short run of every target (CI): FUZZ_SECONDS each.
FUZZ_SECONDS ?= 20
fuzz-smoke: fuzz
	@scripts/fuzz_run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

clean:
	rm -rf build build-debug build-fuzz

-include $(shell find $(BUILD) build-debug build-fuzz -name '*.d' 2>/dev/null)
