# The installed tree: cmake --install into a scratch prefix, then a consumer built with
# pkg-config against it, shared and static (test/install_consumer.sh).
set(TIDE_CONSUMER_FLAGS "")
if(TIDE_SANITIZE)
  set(TIDE_CONSUMER_FLAGS "-fsanitize=${TIDE_SANITIZE}")
endif()
add_test(NAME install_consumer
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/install_consumer.sh ${PROJECT_BINARY_DIR}
                 ${PROJECT_SOURCE_DIR} ${CMAKE_C_COMPILER} "${TIDE_CONSUMER_FLAGS}")
set_tests_properties(install_consumer PROPERTIES LABELS "release" TIMEOUT 120)
