# Runs the built executable (through EMULATOR, '|'-separated, on a cross build) to write DIR/shardwise.1
# (`shardwise man-page`), DIR/shardwise.bash and DIR/_shardwise (`shardwise completion bash|zsh`).
string(REPLACE "|" ";" run "${EMULATOR}")
list(APPEND run ${EXE})
file(MAKE_DIRECTORY ${DIR})
foreach(pair "man-page;shardwise.1" "completion;bash;shardwise.bash" "completion;zsh;_shardwise")
  list(POP_BACK pair out)
  execute_process(COMMAND ${run} ${pair} OUTPUT_FILE ${DIR}/${out}.tmp RESULT_VARIABLE failed)
  if(failed)
    message(FATAL_ERROR "`shardwise ${pair}` failed: ${failed}")
  endif()
  file(RENAME ${DIR}/${out}.tmp ${DIR}/${out})
endforeach()
