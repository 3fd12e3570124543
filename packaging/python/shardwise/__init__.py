"""shardwise: convert large-model checkpoints between layouts, driven by declarative rules.

This package carries the static shardwise executable (shardwise/bin/shardwise); the `shardwise`
command and `python -m shardwise` run it with their arguments. See docs/install.md.
"""

import os
import sys

__all__ = ["binary", "main"]


def binary() -> str:
    """The path of the packaged executable."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "shardwise")


def main() -> None:
    """Replaces this process with the executable (its exit code and signals are the command's)."""
    path = binary()
    try:
        os.execv(path, [path] + sys.argv[1:])
    except OSError as error:
        sys.stderr.write(f"shardwise: cannot run the packaged executable {path}: {error.strerror}\n")
        sys.exit(70)
