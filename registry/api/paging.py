"""The next page of a list, said the same way by every paged route: `Link: <…>; rel="next"`
(RFC 8288, with the request's own filters) and `X-Next-Cursor`; the last page says neither."""

from __future__ import annotations

from fastapi import Request, Response


def link_next(request: Request, response: Response, cursor: str | None, limit: int) -> None:
    if cursor is None:
        return
    following = request.url.include_query_params(cursor=cursor, limit=limit)
    response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
    response.headers["X-Next-Cursor"] = cursor
