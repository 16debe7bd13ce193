"""A run over many files: the command line, input sharding, the batch loop and its log.

Imports ``engine`` (lazily, after the arguments are valid), ``io`` and ``vocab``.
"""
