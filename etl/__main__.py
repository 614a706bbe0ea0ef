"""Run the CLI as ``python -m etl``."""

from etl.cli import main

# Guarded: worker processes (spawn) import the parent's main module as __mp_main__, and must not
# start a second CLI.
if __name__ == "__main__":
    main()
