# Generates a C++ source holding the bundled rules files as string literals, rebuilt when they change.
function(shardwise_embed_rules out)
  set(inputs ${ARGN})
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} "-DINPUTS=${inputs}" -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake/embed_rules.cmake
    DEPENDS ${inputs} ${CMAKE_CURRENT_SOURCE_DIR}/cmake/embed_rules.cmake
    COMMENT "Embedding bundled rules")
endfunction()
