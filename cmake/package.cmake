# The CMake package: find_package(tide) gives tide::tide (libtide.so), tide::net
# (libtide-net.so), and tide::static / tide::net_static (the archives). Installed under
# <libdir>/cmake/tide; test/package_consumer builds a project against a scratch install.
include(CMakePackageConfigHelpers)

install(EXPORT tideTargets NAMESPACE tide:: FILE tideTargets.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tide)
configure_package_config_file(cmake/tideConfig.cmake.in
  ${PROJECT_BINARY_DIR}/tideConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tide)
# 0.x: a minor release may change the API, so only the same minor version is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/tideConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/tideConfig.cmake ${PROJECT_BINARY_DIR}/tideConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tide)
