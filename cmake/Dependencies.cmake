# Every dependency is a Debian 12 package (see README): nothing vendored, nothing downloaded.
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(fmt REQUIRED)
if(SHARDWISE_STATIC)
  # Debian ships libfmt as a shared library only: a static build compiles fmt's implementation from
  # its headers into an archive (packaging/fmt_archive.cpp). The other objects keep the dynamic
  # build's flags (FMT_SHARED), so ccache gives the static build the dynamic build's objects.
  add_library(shardwise_fmt STATIC ${CMAKE_CURRENT_SOURCE_DIR}/packaging/fmt_archive.cpp)
  target_compile_definitions(shardwise_fmt PUBLIC FMT_SHARED)
  set(SHARDWISE_FMT shardwise_fmt)
else()
  set(SHARDWISE_FMT fmt::fmt)
endif()
find_package(yaml-cpp REQUIRED)
if(SHARDWISE_STATIC)
  # yaml-cpp's CMake package names its shared library; Debian's libyaml-cpp-dev has the archive too.
  find_library(SHARDWISE_YAML_CPP_ARCHIVE libyaml-cpp.a REQUIRED)
  set_target_properties(yaml-cpp PROPERTIES IMPORTED_LOCATION ${SHARDWISE_YAML_CPP_ARCHIVE}
                                            IMPORTED_LOCATION_NONE ${SHARDWISE_YAML_CPP_ARCHIVE})
endif()
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
if(SHARDWISE_STATIC)
  # Only the .a archives: a static executable must not name a shared library.
  set(CMAKE_FIND_LIBRARY_SUFFIXES .a)
endif()
pkg_check_modules(RE2 REQUIRED IMPORTED_TARGET re2)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)
# libxxhash built with its x86 dispatcher (Debian's is) picks AVX2 or AVX-512 at run time, ~3x
# the speed of its default SSE2 code: verify hashes every byte it reads, convert every byte written.
if(SHARDWISE_STATIC AND CMAKE_SYSTEM_PROCESSOR STREQUAL "x86_64")
  # Debian's archive (libxxhash.a) has no dispatcher: a static x86-64 build brings its own
  # (packaging/xxh3_dispatch.cpp), so that the static executable hashes as fast as the dynamic one.
  add_library(shardwise_xxh3_dispatch STATIC ${CMAKE_CURRENT_SOURCE_DIR}/packaging/xxh3_dispatch.cpp
                                             ${CMAKE_CURRENT_SOURCE_DIR}/packaging/xxh3_avx2.cpp)
  set_source_files_properties(${CMAKE_CURRENT_SOURCE_DIR}/packaging/xxh3_avx2.cpp PROPERTIES COMPILE_OPTIONS -mavx2)
  target_link_libraries(shardwise_xxh3_dispatch PUBLIC PkgConfig::XXHASH)
  set(SHARDWISE_XXH3_DISPATCH ON)
  set(SHARDWISE_XXHASH shardwise_xxh3_dispatch)
else()
  include(CheckSymbolExists)
  set(CMAKE_REQUIRED_INCLUDES ${XXHASH_INCLUDE_DIRS})
  set(CMAKE_REQUIRED_LIBRARIES PkgConfig::XXHASH)
  check_symbol_exists(XXH3_64bits_update_dispatch "xxh_x86dispatch.h" SHARDWISE_XXH3_DISPATCH)
  unset(CMAKE_REQUIRED_INCLUDES)
  unset(CMAKE_REQUIRED_LIBRARIES)
  set(SHARDWISE_XXHASH PkgConfig::XXHASH)
endif()
if(SHARDWISE_TESTS)
  find_package(Catch2 2 REQUIRED)
endif()
