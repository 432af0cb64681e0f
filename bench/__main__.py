"""`python -m bench SCENARIO`, the same as `python -m bench SCENARIO`."""

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
