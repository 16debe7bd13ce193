"""The closed vocabularies of the Light My Cells challenge: organelles, modalities, folders."""

from __future__ import annotations

from enum import StrEnum


class Organelle(StrEnum):
    """A fluorescence target; the value is the lower-case name used in folder names."""

    NUCLEUS = "nucleus"
    MITOCHONDRIA = "mitochondria"
    TUBULIN = "tubulin"
    ACTIN = "actin"

    @property
    def title(self) -> str:  # type: ignore[override]
        """Capitalised form used in study file names (``image_12_Nucleus.ome.tiff``)."""
        return self.value.capitalize()

    @property
    def output_folder(self) -> str:
        """Grand-Challenge output interface folder for this organelle."""
        return f"{self.value}-fluorescence-ome-tiff"


class Modality(StrEnum):
    """A transmitted-light contrast method."""

    BF = "BF"
    PC = "PC"
    DIC = "DIC"


ORGANELLES: tuple[Organelle, ...] = tuple(Organelle)
MODALITIES: tuple[Modality, ...] = tuple(Modality)

#: Grand-Challenge input interface folder (under ``images/``).
INPUT_FOLDER = "organelles-transmitted-light-ome-tiff"

#: Metrics the official evaluation computes per organelle.
METRICS: dict[Organelle, tuple[str, ...]] = {
    Organelle.NUCLEUS: ("MAE", "SSIM", "PCC", "E_dist", "C_dist"),
    Organelle.MITOCHONDRIA: ("MAE", "SSIM", "PCC", "E_dist", "C_dist"),
    Organelle.TUBULIN: ("SSIM", "PCC"),
    Organelle.ACTIN: ("SSIM", "PCC"),
}


def parse_organelles(text: str) -> tuple[Organelle, ...]:
    """Parse a comma-separated organelle list such as ``"nucleus,actin"``.

    Raises
    ------
    ValueError
        Naming the unknown organelle and the accepted ones.
    """
    out: list[Organelle] = []
    for word in (w.strip().lower() for w in text.split(",") if w.strip()):
        try:
            organelle = Organelle(word)
        except ValueError:
            accepted = ", ".join(ORGANELLES)
            raise ValueError(f"unknown organelle '{word}' (expected one of {accepted})") from None
        if organelle not in out:
            out.append(organelle)
    if not out:
        raise ValueError("no organelle given")
    return tuple(out)
