# Cross-compiling for aarch64 with Debian's toolchain (g++-aarch64-linux-gnu) against arm64 libraries
# unpacked into SHARDWISE_SYSROOT (scripts/aarch64-sysroot), run under qemu-user: the tests, and the
# build's own runs of the executable (the man page and completion), go through the emulator.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

set(SHARDWISE_SYSROOT "" CACHE PATH "The unpacked arm64 packages (scripts/aarch64-sysroot)")
if(NOT SHARDWISE_SYSROOT)
  message(FATAL_ERROR "aarch64-linux-gnu.cmake: give -DSHARDWISE_SYSROOT=DIR (made by scripts/aarch64-sysroot)")
endif()
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES SHARDWISE_SYSROOT)

set(CMAKE_FIND_ROOT_PATH ${SHARDWISE_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(ENV{PKG_CONFIG_SYSROOT_DIR} ${SHARDWISE_SYSROOT})
set(ENV{PKG_CONFIG_LIBDIR} "${SHARDWISE_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig:${SHARDWISE_SYSROOT}/usr/share/pkgconfig")
# The libraries' own dependencies are found in the sysroot when linking.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-Wl,-rpath-link,${SHARDWISE_SYSROOT}/usr/lib/aarch64-linux-gnu")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-Wl,-rpath-link,${SHARDWISE_SYSROOT}/usr/lib/aarch64-linux-gnu")
set(CMAKE_MODULE_LINKER_FLAGS_INIT "-Wl,-rpath-link,${SHARDWISE_SYSROOT}/usr/lib/aarch64-linux-gnu")

set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64-static -L ${SHARDWISE_SYSROOT})
