"""The Light My Cells study layout: file names and ``best_z.csv``.

The challenge's data (BioImage Archive S-BIAD1047) and the simulated microscope both write::

    Study_<n>/image_<ID>_<BF|PC|DIC>_z<k>.ome.tiff    one transmitted-light plane
    Study_<n>/image_<ID>_<Organelle>.ome.tiff         ground truth at best focus
    best_z.csv                                        name,modality,image_z,best_z

This module is the one place that knows that grammar; the simulator writes it, input
discovery, the evaluation and the training data index read it.
"""

from __future__ import annotations

import re

from lightmycells.vocab import MODALITIES, ORGANELLES, Modality, Organelle

BEST_Z_FILE = "best_z.csv"
BEST_Z_COLUMNS = ("name", "modality", "image_z", "best_z")
STUDY_SUFFIXES = (".ome.tiff", ".ome.tif")

INPUT_NAME = re.compile(
    r"^image_(?P<id>.+?)_(?P<modality>" + "|".join(MODALITIES) + r")_z(?P<z>\d+)\.ome\.tiff?$"
)
TARGET_NAME = re.compile(
    r"^image_(?P<id>.+?)_(?P<organelle>" + "|".join(o.title for o in ORGANELLES)
    + r")\.ome\.tiff?$",
    re.IGNORECASE,
)


def input_stem(image_id: int | str, modality: Modality | str, z: int) -> str:
    """``image_<ID>_<MOD>_z<k>``: a transmitted-light plane's name without suffix."""
    return f"image_{image_id}_{Modality(modality)}_z{z}"


def target_stem(image_id: int | str, organelle: Organelle | str) -> str:
    """``image_<ID>_<Organelle>``: a ground-truth image's name without suffix."""
    return f"image_{image_id}_{Organelle(organelle).title}"
