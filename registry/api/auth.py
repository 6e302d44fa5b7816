"""Bearer-token authentication and scope checks, as FastAPI dependencies.

`Reader`, `Writer` and `Admin` are what routes declare: each checks the schema first (the token
table itself may not exist on an old schema), then the token, then its scope. A read may go
without a token when `api_open_reads` is set; a write never may.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from core.errors import Forbidden, Unauthorized
from registry.api.deps import ApiState, Caller, RequestContext, get_state
from registry.db import transaction
from registry.services import tokens

bearer = HTTPBearer(
    auto_error=False, description="An API token from `patchreg token create NAME --scopes read,write`."
)


def identify(state: ApiState, request: Request, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    if credentials is None:
        if request.headers.get("authorization"):
            raise Unauthorized("malformed Authorization header: expected `Authorization: Bearer <token>`")
        return Caller(token=None, scopes=())
    with transaction(state.factory) as session:
        token = tokens.authenticate(session, credentials.credentials)
    return Caller(token=token.name, scopes=tuple(token.scopes))


def require(scope: str) -> Callable[..., RequestContext]:
    """A dependency admitting callers whose token grants `scope` (or, for reads, anyone if open)."""

    def dependency(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> RequestContext:
        state = get_state(request)
        state.guard.check()
        caller = identify(state, request, credentials)
        if caller.token is None:
            if not (scope == "read" and state.settings.api_open_reads):
                raise Unauthorized(
                    f"this route needs an API token with the {scope!r} scope "
                    "(send `Authorization: Bearer <token>`)"
                )
        elif not tokens.grants(caller.scopes, scope):
            raise Forbidden(
                f"token {caller.token!r} has scopes {', '.join(caller.scopes)}; this route needs {scope!r}"
            )
        return RequestContext(state, caller)

    dependency.__name__ = f"require_{scope}"
    return dependency


Reader = Annotated[RequestContext, Depends(require("read"))]
Writer = Annotated[RequestContext, Depends(require("write"))]
Admin = Annotated[RequestContext, Depends(require("admin"))]
