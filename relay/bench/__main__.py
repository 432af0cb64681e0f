"""`python -m relay.bench SCENARIO`, the same as `python -m relay bench SCENARIO`."""

import sys

from relay.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
