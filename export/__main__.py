"""``python -m export``: see the package docstring (``python -m export --help``)."""

import sys

from export import main

if __name__ == "__main__":
    sys.exit(main())
