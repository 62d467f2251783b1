# Threads: the stress test, also run under ThreadSanitizer by `make test` (label threads).
tide_test(test_threads LABELS threads TIMEOUT 180)
