"""Fingerprints of a model directory, read from headers and JSON only (no torch)."""

from registry.fingerprint.model_dir import ModelFingerprint, fingerprint_model_dir
from registry.fingerprint.safetensors_header import TensorInfo, read_safetensors_header

__all__ = ["ModelFingerprint", "TensorInfo", "fingerprint_model_dir", "read_safetensors_header"]
