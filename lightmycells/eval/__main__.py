"""``python -m lightmycells.eval``: runs :func:`lightmycells.eval.evaluate.main`."""

import sys

from lightmycells.eval.evaluate import main

sys.exit(main())
