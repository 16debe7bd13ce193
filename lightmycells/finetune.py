"""``python -m lightmycells.finetune ...``: from a CSV of paired images to a weights folder.

The work, and torch, live in :mod:`lightmycells.train.finetune`.
"""

import sys

if __name__ == "__main__":
    from lightmycells.train.finetune import main

    sys.exit(main())
