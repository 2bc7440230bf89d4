"""``python -m kstate node [flags]``: the node's CLI (kstate/cli.py)."""

import sys

from kstate.cli import main

if __name__ == "__main__":
    sys.exit(main())
