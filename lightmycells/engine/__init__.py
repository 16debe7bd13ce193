"""The inference engine: one 2D image in, organelle predictions out.

Manifest and routing, normalisation, tiling (pure numpy, knows no ONNX), the ONNX Runtime
sessions, dihedral TTA, pixel-size resampling and z-stack reduction. Imports ``io`` and
``vocab`` only; never torch.
"""
