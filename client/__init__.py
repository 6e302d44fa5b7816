"""A Python client for a patchreg server: `Client(url, token)` or `Client.from_env()`.

Torch-free (httpx and pydantic only); results are `registry.schemas` models and errors the
`core.errors` family, exactly as the local services give them.
"""

from __future__ import annotations

from client.api import Client
from client.errors import ApiError, ServerUnreachable
from client.models import NewToken, ResolvedPatch

__all__ = ["ApiError", "Client", "NewToken", "ResolvedPatch", "ServerUnreachable"]
