# The README's usage example and the burst demo. Both link the shared library, as a
# program built against the installed tide would, and both run as tests.
add_executable(usage usage.c)
target_link_libraries(usage PRIVATE tide::tide)
add_executable(burst burst.c)
target_link_libraries(burst PRIVATE tide::tide)

# `cmake --build <dir> --target burst-demo` plays the scripted burst.
add_custom_target(burst-demo COMMAND burst DEPENDS burst USES_TERMINAL
                  COMMENT "tide: a scripted burst on one pool")

if(BUILD_TESTING)
  add_test(NAME example_usage COMMAND usage)
  # Not "unit": that label also runs under Valgrind, which cannot map the default 64 GiB
  # reservation the example keeps (it is the README's text, character for character).
  set_tests_properties(example_usage PROPERTIES LABELS "release" TIMEOUT 60
                       PASS_REGULAR_EXPRESSION "hello, tide: 2048 live")
  add_test(NAME example_burst COMMAND burst 64)
  set_tests_properties(example_burst PROPERTIES LABELS "release" TIMEOUT 60
                       PASS_REGULAR_EXPRESSION "shrink: ")
endif()
