"""Response shapes the API declares beside its routes rather than in `registry.schemas`.

They extend the shared schemas, so a client result is the same pydantic model a local service
returns, plus what only HTTP adds (a download URL, a token's one-time secret).
"""

from __future__ import annotations

from registry.schemas import Resolution, Schema, TokenRead


class ResolvedPatch(Resolution):
    """`GET /v1/resolve`: the chosen patch, why, and where to download it."""

    download_url: str


class NewToken(Schema):
    """`POST /v1/tokens`: the token and its secret, which the server shows this once only."""

    token: TokenRead
    secret: str
