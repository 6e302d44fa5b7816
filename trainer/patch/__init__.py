"""Patch format: types, save/load with validation, apply/revert/merge, export to PEFT."""
