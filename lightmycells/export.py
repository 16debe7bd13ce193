"""``python -m lightmycells.export ...``: the export command (a contract in DESIGN.md).

The export itself, and torch, live in :mod:`lightmycells.train.export`.
"""

import sys

if __name__ == "__main__":
    from lightmycells.train.export import main

    sys.exit(main())
