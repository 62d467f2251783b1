# Elasticity: automatic shrink with decay, purge against smaps, the background thread.
tide_test(test_maintain LABELS "unit;threads" TIMEOUT 180)
