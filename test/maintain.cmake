# Elasticity: automatic shrink with decay, purge against smaps, the background thread.
# Not under Valgrind (label elastic, not unit): its waits are polls against a wall clock.
tide_test(test_maintain LABELS "elastic;threads" TIMEOUT 180)
