"""The closed vocabularies of the Light My Cells challenge: organelles, modalities, folders."""

from __future__ import annotations

import re
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

#: Words for each modality as microscopes, OME-XML (``Channel/@ContrastMethod``: Brightfield,
#: Phase, DIC) and users write them, keyed by :func:`_word_key` ("Bright Field", "bright-field"
#: and "BRIGHTFIELD" are one key). Ph1/Ph2/Ph3 name the phase annulus of the objective.
MODALITY_WORDS: dict[str, Modality] = {
    "bf": Modality.BF, "brightfield": Modality.BF,
    "pc": Modality.PC, "phase": Modality.PC, "phasecontrast": Modality.PC,
    "ph1": Modality.PC, "ph2": Modality.PC, "ph3": Modality.PC,
    "dic": Modality.DIC, "nomarski": Modality.DIC, "nomarskidic": Modality.DIC,
    "differentialinterferencecontrast": Modality.DIC,
}
#: OME ``ContrastMethod`` values that name a contrast method no model here was trained on
#: (OME's ``Other`` says nothing and counts as an unknown word).
UNMODELLED_CONTRAST: dict[str, str] = {
    "hoffmanmodulation": "HoffmanModulation", "obliqueillumination": "ObliqueIllumination",
    "polarizedlight": "PolarizedLight", "darkfield": "Darkfield",
    "fluorescence": "Fluorescence",
}
_ACCEPTED_WORDS = ("BF/Brightfield/Bright Field, PC/Phase/Phase Contrast/Ph1-3, "
                   "DIC/Nomarski/Differential Interference Contrast")


class ModalityError(ValueError):
    """A word that names no modality the models handle; the message says what is accepted."""


def _word_key(word: str) -> str:
    """Case, spaces, dashes, underscores and dots dropped: ``"Bright-Field"`` → ``brightfield``."""
    return re.sub(r"[\s_\-.]", "", word).lower()


def modality_in(word: str | None) -> Modality | None:
    """The modality a metadata word names, or None when it names none.

    For free-text fields, where an unknown word is no information (an OME ``Channel/@Name``
    may be ``"Channel:0:0"`` or ``"Cy5"``). Same words as :func:`parse_modality`.
    """
    return MODALITY_WORDS.get(_word_key(str(word))) if word else None


def unmodelled_contrast(word: str | None) -> str | None:
    """OME's name for a contrast method without a model (``"darkfield"`` → ``"Darkfield"``).

    None when ``word`` names no such method.
    """
    return UNMODELLED_CONTRAST.get(_word_key(str(word))) if word else None


def parse_modality(word: str | Modality) -> Modality:
    """Parse a modality as a user or a microscope writes it, case-insensitively.

    ``"Brightfield"``, ``"Bright Field"``, ``"bright-field"``, ``"BF"`` → BF; ``"Phase"``,
    ``"Phase Contrast"``, ``"PhaseContrast"``, ``"Ph3"``, ``"PC"`` → PC; ``"Nomarski"``,
    ``"DIC"``, ``"Differential Interference Contrast"`` → DIC.

    Raises
    ------
    ModalityError
        Naming the word and the accepted ones; an OME contrast method without a model
        (``"Darkfield"``) says so. Never a silent guess.
    """
    modality = modality_in(str(word))
    if modality is not None:
        return modality
    unmodelled = unmodelled_contrast(str(word))
    problem = (f"contrast method {unmodelled} has no model" if unmodelled
               else f"unknown modality '{word}'")
    raise ModalityError(f"{problem} (expected one of {_ACCEPTED_WORDS})")


#: Grand-Challenge input interface folder (under ``images/``).
INPUT_FOLDER = "organelles-transmitted-light-ome-tiff"



class Metric(StrEnum):
    """A challenge metric; the value is its key in the official metrics JSON."""

    PCC = "PCC"
    SSIM = "SSIM"
    MAE = "MAE"
    E_DIST = "E_dist"
    C_DIST = "C_dist"

    @property
    def higher_is_better(self) -> bool:
        """True for the similarities (PCC, SSIM), False for the distances."""
        return self in (Metric.PCC, Metric.SSIM)


_ALL_METRICS = (Metric.MAE, Metric.SSIM, Metric.PCC, Metric.E_DIST, Metric.C_DIST)
#: Metrics the official evaluation computes per organelle, in its order.
METRICS: dict[Organelle, tuple[Metric, ...]] = {
    Organelle.NUCLEUS: _ALL_METRICS,
    Organelle.MITOCHONDRIA: _ALL_METRICS,
    Organelle.TUBULIN: (Metric.SSIM, Metric.PCC),
    Organelle.ACTIN: (Metric.SSIM, Metric.PCC),
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
