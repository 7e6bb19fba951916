"""`python -m deployments.kits build --out models` (see `deployments.kits`)."""

import sys

from deployments.kits import _main

if __name__ == "__main__":
    sys.exit(_main())
