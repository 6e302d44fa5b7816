"""Who is browsing: the API token, kept in an HTTP-only SameSite=Strict cookie, and the CSRF token
bound to it.

The cookie holds the token's secret, so a browser session has exactly the token's scopes and is
audited under its name, as an API call is. Every form that writes carries `csrf`, an HMAC of the
secret that another site cannot compute (and the cookie is not sent on a cross-site POST anyway);
a write whose `csrf` is missing or wrong is refused, as is one whose `Origin` is another site.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from fastapi import Request

from core.errors import Forbidden, Unauthorized
from registry.api.deps import ApiState, Caller, RequestContext, get_state
from registry.db import transaction
from registry.services import tokens

COOKIE = "patchreg_token"


@dataclass(frozen=True)
class Viewer:
    """A browser's caller: its token (None when reads are open to anyone) and its secret."""

    context: RequestContext
    secret: str | None

    @property
    def caller(self) -> Caller:
        return self.context.caller

    def can(self, scope: str) -> bool:
        return self.caller.grants(scope)

    @property
    def csrf(self) -> str:
        return csrf_token(self.secret) if self.secret else ""


class LoginNeeded(Exception):
    """No usable token: the page sends the browser to the login form."""


def csrf_token(secret: str) -> str:
    return hmac.new(b"patchreg-web-csrf", secret.encode(), hashlib.sha256).hexdigest()


def caller_for(state: ApiState, secret: str) -> Caller:
    with transaction(state.factory) as session:
        token = tokens.authenticate(session, secret)
    return Caller(token=token.name, scopes=tuple(token.scopes))


def current_viewer(request: Request) -> Viewer:
    """The viewer of this request; LoginNeeded when there is no valid token and reads are closed."""
    state = get_state(request)
    state.guard.check()
    secret = request.cookies.get(COOKIE)
    if secret:
        try:
            return Viewer(RequestContext(state, caller_for(state, secret)), secret)
        except Unauthorized:
            pass  # revoked or unknown: log in again
    if state.settings.api_open_reads:
        return Viewer(RequestContext(state, Caller(token=None, scopes=())), None)
    raise LoginNeeded


def check_write(viewer: Viewer, request: Request, csrf: str) -> None:
    """A write from a form: the token's write scope, a matching CSRF token, a same-site Origin."""
    if not viewer.can("write"):
        who = f"token {viewer.caller.token!r}" if viewer.caller.token else "an anonymous visitor"
        raise Forbidden(f"{who} cannot change the registry; log in with a token that has the 'write' scope")
    if not viewer.secret or not hmac.compare_digest(csrf, csrf_token(viewer.secret)):
        raise Forbidden(
            "this form is stale or was not sent by this site (CSRF check failed); reload the page"
        )
    origin = request.headers.get("origin")
    if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise Forbidden(f"a write from {origin} is refused: forms are accepted from this site only")
