# Cross build for 64-bit Arm with Debian's cross compiler (gcc-aarch64-linux-gnu); tests run
# under qemu-user (CTest runs each test executable through CMAKE_CROSSCOMPILING_EMULATOR).
#   cmake -S . -B build/aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#         -DTIDE_NET=OFF -DTIDE_BENCH=OFF
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_LINKER aarch64-linux-gnu-ld)
set(CMAKE_OBJCOPY aarch64-linux-gnu-objcopy)
set(CMAKE_AR aarch64-linux-gnu-ar)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_CROSSCOMPILING_EMULATOR env;TIDE_EMULATOR=qemu-aarch64;qemu-aarch64;-L;/usr/aarch64-linux-gnu)
