"""`python -m shardwise ARGS`: the same as `shardwise ARGS`."""

from shardwise import main

main()
