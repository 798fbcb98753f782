"""``python -m rlgen.run <command> ...``: the rlgen command line (see :mod:`rlgen.cli`)."""

import sys

from rlgen.cli import main

if __name__ == "__main__":
    sys.exit(main())
