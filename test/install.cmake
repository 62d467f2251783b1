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

# The CMake package: find_package(tide) in a project of its own against a scratch install
# (test/package_consumer.sh).
add_test(NAME package_consumer
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/package_consumer.sh ${PROJECT_BINARY_DIR}
                 ${PROJECT_SOURCE_DIR} ${CMAKE_C_COMPILER} ${PROJECT_VERSION}
                 "${TIDE_CONSUMER_FLAGS}")
set_tests_properties(package_consumer PROPERTIES LABELS "release" TIMEOUT 180
                     SKIP_RETURN_CODE 77)
