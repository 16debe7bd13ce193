"""``python -m lightmycells.export ...``: runs :func:`lightmycells.train.export.main`.

A shim so the command reads naturally; the export itself (and torch) lives in ``train/``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from lightmycells.train.export import main

    sys.exit(main())
