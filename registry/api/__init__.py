"""The HTTP API (FastAPI): `/v1` routes for everything the CLI does, behind bearer tokens.

Import-light by design: nothing here imports torch or the trainer at import time, so the server
starts on a machine without them; PEFT conversion imports them inside its handler only.
"""
