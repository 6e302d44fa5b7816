"""The next page of a list, said the same way by every paged route: `Link: <…>; rel="next"`
(RFC 8288, with the request's own filters) and `X-Next-Cursor`; the last page says neither."""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Query, Request, Response

from registry.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "Cursor", "Limit", "link_next", "paged"]

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Rows per page (default {DEFAULT_LIMIT})")]
Cursor = Annotated[
    str | None, Query(max_length=4096, description="Where the page starts: the previous page's X-Next-Cursor")
]


def link_next(request: Request, response: Response, cursor: str | None, limit: int) -> None:
    if cursor is None:
        return
    following = request.url.include_query_params(cursor=cursor, limit=limit)
    response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
    response.headers["X-Next-Cursor"] = cursor


def paged(request: Request, response: Response, page: Page[T], limit: int) -> list[T]:
    """The page's rows as the body, where the next one starts in the headers."""
    link_next(request, response, page.next_cursor, limit)
    return page.items
