# Thin driver over CMake (as neovim's top-level Makefile is). Real build logic lives in CMakeLists.txt.
BUILD_DIR    ?= build
BUILD_TYPE   ?= RelWithDebInfo
CMAKE_FLAGS  ?=
JOBS         ?= $(shell nproc)
RUN_ARGS     ?=
FUZZ_SECONDS ?= 300

.PHONY: all deps build run test sanitize fuzz bench clean format

all: build

deps:
	@.ci/deps

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

build: deps $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	./$(BUILD_DIR)/collector/meshscope $(RUN_ARGS)

test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)

# ASan+UBSan (LeakSanitizer included: a leak fails the daemon's exit code, which every
# integration test checks) build, and the whole suite under it, but for the fuzz smoke (its
# fuzzers are ASan+UBSan builds already) and the overload test (a load bound, not a memory check,
# that the sanitizer's slowdown would only distort).
sanitize: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMESHSCOPE_SANITIZE=address $(CMAKE_FLAGS)
	cmake --build build-asan -j $(JOBS)
	ctest --test-dir build-asan --output-on-failure -j $(JOBS) -LE 'fuzz|load'

# Every libFuzzer target for FUZZ_SECONDS each (default 300), in a clang build of its own.
fuzz: build
	MESHSCOPE_SRC=$(CURDIR) MESHSCOPE_BUILD=$(CURDIR)/$(BUILD_DIR) FUZZ_SECONDS=$(FUZZ_SECONDS) \
	  tests/fuzz/smoke.sh

bench: deps
	cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build build-release -j $(JOBS)
	tests/bench/run.sh build-release

clean:
	rm -rf $(BUILD_DIR) build-asan build-release

format:
	clang-format -i $$(git ls-files '*.c' '*.h')
