// SPDX-License-Identifier: MIT
/*
 * version.c - the library's version at run time.
 *
 * A program compiled against one tide.h may run against another libtide.so (same soname,
 * newer minor release). TIDE_VERSION_STRING says which header it was compiled with;
 * tide_version() says which library it runs with. Both come from the project VERSION in
 * CMakeLists.txt (cmake/version.h.in), so they agree for a library and its header.
 */
#include "tide.h"

const char *tide_version(void)
{
	return TIDE_VERSION_STRING;
}
