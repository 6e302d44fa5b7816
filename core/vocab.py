"""The registry's closed vocabularies: what a status, an origin or a job kind may be.

Kept apart from the ORM so that the CLI, the API and the worker can name them without importing
table classes; `registry/models.py` turns each into a CHECK constraint.
"""

from __future__ import annotations

from core.rows import ROLES

DATASET_ROLES = ROLES
PATCH_ORIGINS = ("trained", "ported", "retrained", "imported")
SOURCE_ORIGINS = tuple(o for o in PATCH_ORIGINS if o != "ported")  # a matrix row's patch: not a copy
PATCH_STATUSES = ("candidate", "validated", "degraded", "inconclusive", "rejected", "deprecated")
VERDICTS = ("compatible", "incompatible")
JOB_KINDS = ("train", "importance", "port_all", "port", "evaluate")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
BASE_STATUSES = ("ready", "deprecated")

# The trainer's registries are the truth (tests/trainer/test_vocabulary.py checks these match them);
# the registry, which cannot import the trainer, validates requests against these names.
TRAIN_METHODS = ("lora", "s2ft", "propulsion", "full")
REGULARIZERS = ("alewr",)
REGULARIZABLE = ("full", "s2ft")  # methods whose trainable tensors are views of base weights
