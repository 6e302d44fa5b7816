"""One HTTP connection pool to the server: the token, bounded retries with backoff, error mapping.

What is retried, and why it is safe:
- a connection that could not be opened, for every method: the server never saw the request;
- a 503 (database unreachable, schema being upgraded, a proxy with no upstream) and a connection
  lost after the request went out, for idempotent methods only: a POST that may have been carried
  out is never sent twice.
Each retry waits `backoff · 2^attempt` seconds (or the server's `Retry-After`), at most `max_backoff`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from client.errors import ServerUnreachable, from_response

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


class Transport:
    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        **httpx_options: Any,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, **httpx_options)

    def close(self) -> None:
        self.http.close()

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        """How long to wait before retry number `attempt` (0-based)."""
        wait = self.backoff * float(2**attempt)
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after is not None and retry_after.strip().isdigit():
            wait = float(retry_after)
        return min(wait, self.max_backoff)

    def send(self, method: str, path: str, *, stream: bool = False, **kwargs: Any) -> httpx.Response:
        """A response with a status below 400 (its body unread when `stream`), after retries; an
        error status raises the `core.errors` exception the body names."""
        method = method.upper()
        attempt = 0
        while True:
            request = self.http.build_request(method, path, **kwargs)
            try:
                response = self.http.send(request, stream=stream)
            except httpx.TransportError as exc:
                if attempt < self.retries and (isinstance(exc, NEVER_SENT) or method in IDEMPOTENT):
                    time.sleep(self.delay(attempt))
                    attempt += 1
                    continue
                raise ServerUnreachable(
                    f"cannot reach the patchreg server at {self.url}: {exc or type(exc).__name__}",
                    url=self.url,
                    attempts=attempt + 1,
                ) from exc
            if response.status_code == 503 and method in IDEMPOTENT and attempt < self.retries:
                response.close()
                time.sleep(self.delay(attempt, response))
                attempt += 1
                continue
            if response.status_code >= 400:
                try:
                    response.read()
                finally:
                    response.close()
                raise from_response(response)
            return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON body (None for an empty one, e.g. 204)."""
        response = self.send(method, path, **kwargs)
        return response.json() if response.content else None

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A successful response whose body the block reads in chunks; closed afterwards."""
        response = self.send(method, path, stream=True, **kwargs)
        try:
            yield response
        finally:
            response.close()
