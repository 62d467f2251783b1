# After an install into a prefix whose lib directory the dynamic linker already searches
# (/usr/local/lib, /usr/lib/<multiarch> ...), run ldconfig so that a program linked
# against libtide.so runs at once. For a prefix the linker does not search
# ($HOME/.local), say how to run from there (rpath or LD_LIBRARY_PATH; README). ldconfig
# is not run without root, or with DESTDIR set (a package build: the package runs it).
install(CODE "set(tide_libdir_rel \"${CMAKE_INSTALL_LIBDIR}\")")
install(CODE [[
  set(tide_libdir "${CMAKE_INSTALL_PREFIX}/${tide_libdir_rel}")
  find_program(tide_ldconfig ldconfig PATHS /sbin /usr/sbin NO_CACHE)
  set(tide_searched FALSE)
  if(tide_ldconfig AND "$ENV{DESTDIR}" STREQUAL "")
    # The directories the linker searches: "ldconfig -v -N -X" lists them as "DIR: ...".
    execute_process(COMMAND ${tide_ldconfig} -v -N -X OUTPUT_VARIABLE tide_out ERROR_QUIET)
    string(REGEX MATCHALL "(^|\n)/[^:\n]*:" tide_dirs "${tide_out}")
    file(REAL_PATH "${tide_libdir}" tide_real)
    foreach(d ${tide_dirs})
      string(REGEX REPLACE "^\n|:$" "" d "${d}")
      if(EXISTS "${d}")
        file(REAL_PATH "${d}" d)
        if(d STREQUAL tide_real)
          set(tide_searched TRUE)
        endif()
      endif()
    endforeach()
  endif()
  execute_process(COMMAND id -u OUTPUT_VARIABLE tide_uid OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(tide_searched AND tide_uid STREQUAL "0")
    message(STATUS "tide: ldconfig (${tide_libdir} is in the dynamic linker's path)")
    execute_process(COMMAND ${tide_ldconfig})
  elseif(tide_searched)
    message(STATUS "tide: run ldconfig as root so that programs find ${tide_libdir}/libtide.so")
  elseif("$ENV{DESTDIR}" STREQUAL "")
    message(STATUS "tide: ${tide_libdir} is not in the dynamic linker's path: link with "
                   "-Wl,-rpath,${tide_libdir} or run with LD_LIBRARY_PATH=${tide_libdir}")
  endif()
]])
