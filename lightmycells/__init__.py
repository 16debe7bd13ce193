"""lightmycells: label-free microscopy (BF, PC, DIC) to organelle fluorescence.

Inference runs exported ONNX models with ONNX Runtime (see ``process.py``); the
``train`` subpackage, the only place that imports torch, trains and exports them.
"""

__version__ = "0.1.0"
