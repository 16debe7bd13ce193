"""The inference engine: one 2D image in, organelle predictions out.

Manifest and routing, normalisation, tiling (pure numpy, knows no ONNX), the ONNX Runtime
sessions, dihedral TTA, pixel-size resampling and z-stack reduction. Imports ``io`` and
``vocab`` only; never torch.
"""

#: Bumped whenever the engine's outputs change for the same models, input and settings, so
#: that ``--resume`` redoes output sets an earlier revision made instead of mixing the two.
#: 1: SimpleITK resampling; 2 (2026-12-01): the separable NumPy resampler.
OUTPUT_REVISION = 2
