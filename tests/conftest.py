"""Shared pytest fixtures: weights folders holding tiny real ONNX models and a manifest.

Each fixture returns a fresh folder (safe to modify) that ``lightmycells.engine.manifest.load``
accepts. The models themselves are described in ``tests/onnx_models.py``.
"""

from __future__ import annotations

import pytest

from tests import onnx_models


@pytest.fixture
def identity_weights(tmp_path):
    """One 4-channel identity model for all organelles and modalities (patch 256, overlap 0.25)."""
    return onnx_models.write_weights(tmp_path / "weights")


@pytest.fixture
def conv_weights(tmp_path):
    """One 4-channel random 5×5 convolution for all organelles and modalities."""
    return onnx_models.write_weights(tmp_path / "weights", onnx_models.conv_model(4), name="conv")


@pytest.fixture
def equivariant_weights(tmp_path):
    """One 4-channel rotation/flip-equivariant model for all organelles and modalities."""
    return onnx_models.write_weights(tmp_path / "weights", onnx_models.equivariant_model(4),
                                     name="equivariant")


@pytest.fixture
def unet_weights(tmp_path):
    """A tiny 4-channel UNet (sizes must be multiples of 4) for all organelles and modalities."""
    return onnx_models.write_weights(tmp_path / "weights", onnx_models.unet_model(4), name="unet")


@pytest.fixture
def routed_weights(tmp_path):
    """Three affine models with distinct outputs; see ``onnx_models.write_routed_weights``."""
    return onnx_models.write_routed_weights(tmp_path / "weights")
