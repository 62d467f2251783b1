# The core pool: OS layer, bitmap, pool contract, randomized model test, death tests.
tide_test(test_os LABELS unit)
tide_test(test_bitmap LABELS unit)
