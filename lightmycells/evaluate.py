"""``python -m lightmycells.evaluate ...``: the evaluation command (a contract in DESIGN.md).

The code lives in :mod:`lightmycells.eval`; this name stays so scripts and docs keep working.
"""

import sys

if __name__ == "__main__":
    # Import by the package name so the worker processes of --jobs can pickle its functions.
    from lightmycells.eval.cli import main

    sys.exit(main())
