"""Fingerprints of a model directory, read from headers and JSON only (no torch)."""

from registry.fingerprint.model_dir import ModelFingerprint, fingerprint_model_dir

__all__ = ["ModelFingerprint", "fingerprint_model_dir"]
