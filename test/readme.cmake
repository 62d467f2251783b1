# The README's usage example is examples/usage.c, character for character: this test
# fails when one is edited without the other (the example itself is built and run by
# examples/examples.cmake).
add_test(NAME readme_example
         COMMAND ${CMAKE_COMMAND} -DREADME=${PROJECT_SOURCE_DIR}/README.md
                 -DEXAMPLE=${PROJECT_SOURCE_DIR}/examples/usage.c
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/scripts/check_readme.cmake)
set_tests_properties(readme_example PROPERTIES LABELS "unit;release")
