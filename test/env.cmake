# The pool in real processes' environments (issue 9, kinds 5 to 8): strict overcommit,
# cgroup limits, transparent huge pages, sanitizers, static linking, the public headers.
tide_test(test_env LABELS unit)
# Root only; each changes a machine-wide setting (vm.overcommit_memory, THP mode) or makes a
# cgroup for well under a second and restores it, in a child that cannot leave it changed:
# never run beside other tests.
tide_test(test_overcommit LABELS "root;release")
tide_test(test_cgroup LABELS "root;release")
tide_test(test_thp LABELS "root;release")
set_tests_properties(test_overcommit test_cgroup test_thp PROPERTIES RUN_SERIAL TRUE)
# AddressSanitizer sees misuse of pool buffers (the ASan tree; skipped elsewhere).
tide_test(test_poison LABELS death)

# The installed archives define only tide_* names; the public headers build in every C and
# C++ standard, pedantic, with gcc and clang.
set(TIDE_NET_ARCHIVE "")
if(TARGET tide_net)
  set(TIDE_NET_ARCHIVE $<TARGET_FILE:tide_net>)
endif()
set(TIDE_CONSUMER_FLAGS "")
if(TIDE_SANITIZE)
  set(TIDE_CONSUMER_FLAGS "-fsanitize=${TIDE_SANITIZE}")
endif()
add_test(NAME static_symbols
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/static_symbols.sh $<TARGET_FILE:tide_static>
                 "${TIDE_NET_ARCHIVE}" ${CMAKE_C_COMPILER} ${CMAKE_NM}
                 ${PROJECT_BINARY_DIR}/include "${TIDE_CONSUMER_FLAGS}")
add_test(NAME public_headers COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/public_headers.sh
                                     ${PROJECT_SOURCE_DIR}/include ${PROJECT_BINARY_DIR}/include)
set_tests_properties(static_symbols public_headers PROPERTIES LABELS release TIMEOUT 120
                     SKIP_RETURN_CODE 77)
