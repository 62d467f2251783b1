# The README's commands, over CMake. Each target installs what it is missing first, all
# its groups in one call (scripts/deps.sh: apt-get as root, otherwise it prints the one
# line to run; the benchmarks' peers are optional and skipped when missing).
#
#   make            build the release tree (build/release)
#   make demo       the relay under bursty load; the pool grows and shrinks; writes a plot
#   make test       sanitizer builds (ASan+UBSan, TSan) and the whole suite through CTest
#   make bench      tide against DPDK's mempool and the mallocs (tide-bench)
#   make bench-relay  tide-relay against haproxy, nginx and socat
#   make fuzz       the libFuzzer target, FUZZ_SECONDS long (default 60); fuzz-fast: no ASan
#   make install    into PREFIX (default /usr/local; the tree is configured with it, so
#                   PREFIX=/usr gets Debian's multiarch lib directory)

PREFIX ?= /usr/local
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 60
CTEST_FLAGS ?= --output-on-failure -j $(JOBS)
DEPS := scripts/deps.sh

.PHONY: all deps release build-release demo test test-asan test-tsan test-valgrind test-arm64 bench \
	bench-relay fuzz fuzz-fast install format clean

all: release

deps:
	@$(DEPS) build

release: deps
	@$(MAKE) --no-print-directory build-release

# The release tree, without the package check (the targets below have made it).
build-release:
	@cmake --preset release >/dev/null
	@cmake --build build/release -j $(JOBS)

demo:
	@$(DEPS) build demo
	@$(MAKE) --no-print-directory build-release
	@cmake --build build/release --target demo

test:
	@$(DEPS) build test cross
	@JOBS=$(JOBS) scripts/test-all.sh

# The core library cross-built for aarch64, its unit tests under qemu-user.
test-arm64:
	@$(DEPS) build cross
	@cmake --preset aarch64 >/dev/null
	@cmake --build build/aarch64 -j $(JOBS)
	cd build/aarch64 && ctest $(CTEST_FLAGS) -L unit

# One stage at a time, for a developer: the same trees scripts/test-all.sh uses.
test-asan:
	@cmake --preset asan >/dev/null
	@cmake --build build/asan -j $(JOBS)
	cd build/asan && ctest $(CTEST_FLAGS)

test-tsan:
	@cmake --preset tsan >/dev/null
	@cmake --build build/tsan -j $(JOBS)
	cd build/tsan && ctest $(CTEST_FLAGS) -L threads

test-valgrind: release
	cd build/release && ctest $(CTEST_FLAGS) -L unit -T memcheck --overwrite \
		MemoryCheckCommandOptions="--error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite"

# The peers are installed before the tree is configured, so CMake finds them.
bench:
	@$(DEPS) build bench
	@$(MAKE) --no-print-directory build-release
	@cmake --build build/release --target bench

bench-relay:
	@$(DEPS) build relay-bench
	@$(MAKE) --no-print-directory build-release
	@cmake --build build/release --target bench-relay

fuzz:
	@$(DEPS) build fuzz
	@CC=clang cmake -S . -B build/fuzz -DTIDE_FUZZ=ON -DTIDE_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build/fuzz -j $(JOBS) --target tide-fuzz
	build/fuzz/fuzz/tide-fuzz -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
		build/fuzz/corpus fuzz/corpus

# The same tree without ASan, for long runs (see fuzz/README.md).
fuzz-fast:
	@$(DEPS) build fuzz
	@CC=clang cmake -S . -B build/fuzz -DTIDE_FUZZ=ON -DTIDE_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build/fuzz -j $(JOBS) --target tide-fuzz-fast
	build/fuzz/fuzz/tide-fuzz-fast -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
		-rss_limit_mb=0 build/fuzz/corpus fuzz/corpus

# Configured with PREFIX, so that GNUInstallDirs picks the lib directory for it
# (lib/<multiarch> under /usr). As root into a prefix the dynamic linker searches, the
# install runs ldconfig (cmake/ldconfig.cmake); for another prefix it says how to run.
install: deps
	@cmake --preset release -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	@cmake --build build/release -j $(JOBS)
	cmake --install build/release

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build
