"""Solver profiles shipped with siftopt: the TOML files in this folder (``--profile NAME``).

The top-level ``solvers/`` of the source tree is a link to this folder; installed, the files
are package data of ``siftopt.solvers``, found with :mod:`importlib.resources`.
"""
