"""``python -m lightmycells.evaluate ...``: the evaluation command (docs/EVALUATION.md).

Its name is a contract of the team's DESIGN.md, which lives outside this repository.

The code lives in :mod:`lightmycells.eval`; this name stays so scripts and docs keep working.
"""

import sys

if __name__ == "__main__":
    # Import by the package name so the worker processes of --jobs can pickle its functions.
    from lightmycells.eval.cli import main

    sys.exit(main())
