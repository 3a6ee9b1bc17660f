"""``python -m streamops._gateway ARGS``: the same as ``streamops serve ARGS``."""

import sys

from . import cli_main

if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
