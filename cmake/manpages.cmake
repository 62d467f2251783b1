# man/: a page per public function (man3, liburing's layout: functions that share a page
# are .so links to it), tide-relay(1) and tide(7). Installed with the library; the test
# man_pages checks that every exported symbol has a page, that each page renders with
# groff's warnings on, and that the pages name the errors the headers name.
foreach(section 1 3 7)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/man/man${section}
          DESTINATION ${CMAKE_INSTALL_MANDIR} FILES_MATCHING PATTERN "*.${section}")
endforeach()

if(BUILD_TESTING)
  find_program(TIDE_GROFF groff)
  find_package(Python3 COMPONENTS Interpreter)
  if(TIDE_GROFF AND Python3_FOUND)
    set(tide_man_libs $<TARGET_FILE:tide>)
    set(tide_man_relay)
    if(TIDE_NET)
      list(APPEND tide_man_libs $<TARGET_FILE:tide_net_shared>)
      set(tide_man_relay --relay $<TARGET_FILE:tide-relay>)
    endif()
    add_test(NAME man_pages
             COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/test/check_man.py
                     ${PROJECT_SOURCE_DIR}/man ${PROJECT_SOURCE_DIR}/include
                     ${PROJECT_SOURCE_DIR}/src ${tide_man_relay} ${tide_man_libs})
    set_tests_properties(man_pages PROPERTIES LABELS "release" TIMEOUT 60)
  else()
    message(STATUS "tide: groff or python3 not found, no man_pages test")
  endif()
endif()
