# The pool in real processes (issue 9): fork, thread caches, thread exit and unloading,
# signals and priorities. Threaded: also run under ThreadSanitizer (label threads), which
# must allow the child of a threaded fork to start a thread (the maintenance thread).
# test_fork runs in the release stage too: without a sanitizer, forks of forks included.
tide_test(test_fork LABELS "threads;release" TIMEOUT 180)
set_tests_properties(test_fork PROPERTIES ENVIRONMENT "TSAN_OPTIONS=die_after_fork=0")
# The library's aligned_alloc is wrapped so one thread can be refused a cache; argv[1] is
# the shared library, for the dlopen/dlclose part.
tide_test(test_caches LABELS threads LIBS ${CMAKE_DL_LIBS} ARGS $<TARGET_FILE:tide>)
target_link_options(test_caches PRIVATE -Wl,--wrap=aligned_alloc)
tide_test(test_signals LABELS threads TIMEOUT 180)
