"""Torch-free contracts that `registry` and `trainer` both import, and that import neither.

The patch file specification, the dataset row schema, the safetensors header reader, atomic file
helpers, the error family and the plans exchanged between the registry and the worker live here,
once. Nothing in this package may import torch, transformers, sqlalchemy, fastapi or click.
"""
