"""`python -m bench.gpu [--size reduced] [--device cpu] ...`: see bench/gpu/__init__.py."""

import sys

from bench.gpu.cli import main

sys.exit(main())
