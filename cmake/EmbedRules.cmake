# Generates a C++ source holding the bundled rules files as string literals, rebuilt when they change.
# `default_name` is the file stem of the rules used when --rules is not given; it must be one of them.
function(shardwise_embed_rules out default_name)
  set(inputs ${ARGN})
  set(stems "")
  foreach(in ${inputs})
    get_filename_component(stem ${in} NAME_WLE)  # deepseek-v3.2.yaml -> deepseek-v3.2
    list(APPEND stems ${stem})
  endforeach()
  if(NOT default_name IN_LIST stems)
    message(FATAL_ERROR "SHARDWISE_DEFAULT_RULES '${default_name}' is not one of the bundled rules: ${stems}")
  endif()
  # The list travels as one argument joined by '|' (a ';' would split it; VERBATIM quotes the '|').
  string(REPLACE ";" "|" joined "${inputs}")
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DDEFAULT=${default_name} -DINPUTS=${joined}
            -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake/embed_rules.cmake
    DEPENDS ${inputs} ${CMAKE_CURRENT_SOURCE_DIR}/cmake/embed_rules.cmake
    COMMENT "Embedding bundled rules"
    VERBATIM)
endfunction()
