# The core pool: OS layer, bitmap, pool contract, randomized model test, death tests.
tide_test(test_os LABELS unit)
tide_test(test_bitmap LABELS unit)
tide_test(test_pool LABELS unit)
tide_test(test_pool_random LABELS unit)
# Children die of SIGSEGV on purpose: not run under Valgrind (label death, not unit).
tide_test(test_pool_death LABELS death)
