"""Files at the edges: OME-TIFF read/write, input discovery, the study layout, atomic writes.

No model code here; everything above (``engine``, ``run``, ``eval``, ``simulate``, ``train``)
reads and writes images only through this package.
"""
