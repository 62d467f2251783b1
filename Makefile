# The README's commands, over CMake. Each target installs what it is missing first
# (scripts/deps.sh: apt-get as root, otherwise it prints the line to run).
#
#   make            build the release tree (build/release)
#   make demo       the relay under bursty load; the pool grows and shrinks; writes a plot
#   make test       sanitizer builds (ASan+UBSan, TSan) and the whole suite through CTest
#   make bench      tide against DPDK's mempool and the mallocs (tide-bench)
#   make bench-relay  tide-relay against haproxy, nginx and socat
#   make fuzz       the libFuzzer target, FUZZ_SECONDS long (default 60); fuzz-fast: no ASan
#   make install    into PREFIX (default /usr/local)

PREFIX ?= /usr/local
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 60
CTEST_FLAGS ?= --output-on-failure -j $(JOBS)
DEPS := scripts/deps.sh

.PHONY: all deps release demo test test-asan test-tsan test-valgrind bench \
	bench-relay fuzz fuzz-fast install format clean

all: release

deps:
	@$(DEPS) build

release: deps
	@cmake --preset release >/dev/null
	@cmake --build build/release -j $(JOBS)

demo: deps
	@$(DEPS) demo
	@$(MAKE) --no-print-directory release
	@cmake --build build/release --target demo

test: deps
	@$(DEPS) test
	@JOBS=$(JOBS) scripts/test-all.sh

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
bench: deps
	@$(DEPS) bench
	@$(MAKE) --no-print-directory release
	@cmake --build build/release --target bench

bench-relay: deps
	@$(DEPS) relay-bench
	@$(MAKE) --no-print-directory release
	@cmake --build build/release --target bench-relay

fuzz: deps
	@$(DEPS) fuzz
	@CC=clang cmake -S . -B build/fuzz -DTIDE_FUZZ=ON -DTIDE_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build/fuzz -j $(JOBS) --target tide-fuzz
	build/fuzz/fuzz/tide-fuzz -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
		build/fuzz/corpus fuzz/corpus

# The same tree without ASan, for long runs (see fuzz/README.md).
fuzz-fast: deps
	@$(DEPS) fuzz
	@CC=clang cmake -S . -B build/fuzz -DTIDE_FUZZ=ON -DTIDE_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build/fuzz -j $(JOBS) --target tide-fuzz-fast
	build/fuzz/fuzz/tide-fuzz-fast -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
		-rss_limit_mb=0 build/fuzz/corpus fuzz/corpus

install: release
	cmake --install build/release --prefix $(PREFIX)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build
