# The core pool: OS layer, bitmap, pool contract, randomized model test, death tests.
tide_test(test_os LABELS unit)
tide_test(test_bitmap LABELS unit)
tide_test(test_pool LABELS unit)
tide_test(test_pool_random LABELS unit)
# Children die of SIGSEGV on purpose: not run under Valgrind (label death, not unit).
tide_test(test_pool_death LABELS death)
# Reliability (issue 5): the fault sweep and the bad-input table.
tide_test(test_faults LABELS unit TIMEOUT 300)
tide_test(test_badinput LABELS unit)
