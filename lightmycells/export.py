"""``python -m lightmycells.export ...``: the export command (docs/TRAINING.md).

Its name is a contract of the team's DESIGN.md, which lives outside this repository.

The export itself, and torch, live in :mod:`lightmycells.train.export`.
"""

import sys

if __name__ == "__main__":
    from lightmycells.train.export import main

    sys.exit(main())
