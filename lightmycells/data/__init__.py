"""The real Light My Cells data (BioImage Archive S-BIAD1047): fetch, index, pack, read.

* :mod:`~lightmycells.data.catalog` — the organisers' file lists and per-study pixel sizes;
* :mod:`~lightmycells.data.fetch` — parallel, resumable, verified HTTP(S) download;
* :mod:`~lightmycells.data.index` — every quirk reported, usable fields of view indexed;
* :mod:`~lightmycells.data.pack` / :mod:`~lightmycells.data.store` — a chunked zarr store
  with per-plane statistics, so training reads patches instead of whole planes.

``python -m lightmycells.data fetch|index|pack``; no torch here.
"""
