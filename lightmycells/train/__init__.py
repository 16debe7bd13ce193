"""PyTorch training and ONNX export: the only part of the project that imports torch.

Modules: :mod:`.config` (strict YAML configs), :mod:`.data` (Light My Cells-layout index,
splits, patch sampling), :mod:`.models` (architecture registry), :mod:`.losses` (masked
loss terms), :mod:`.loop` (the training loop, ``python -m lightmycells.train``) and
:mod:`.export` (ONNX export with parity checks and the manifest entry).
"""
