# The differential fuzzer's bounded smoke run: the seed corpus plus random streams, with
# any C compiler (the libFuzzer build is fuzz/, `make fuzz`).
tide_test(test_fuzz_replay SOURCES test_fuzz_replay.c ${PROJECT_SOURCE_DIR}/fuzz/fuzz_pool.c
          LABELS unit ARGS ${PROJECT_SOURCE_DIR}/fuzz/corpus TIMEOUT 300)
target_include_directories(test_fuzz_replay PRIVATE ${PROJECT_SOURCE_DIR}/fuzz)
