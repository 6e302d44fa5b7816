"""Multipart uploads streamed to a private temp directory, counted byte by byte against the limit.

Services take file paths, so each file part is written to a named file as it arrives (never held
in memory), and the directory is removed when the request ends, whether it succeeded or not.
Only the parts a route names are accepted: a typo in a field name is an error, not a silent skip.
Spools go to the store's own temp space (`<store>/tmp/spool-*`, never TMPDIR), so that what a
killed server leaves behind is swept at the next start (`registry.store.scratch`).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from core import inputs
from core.errors import InvalidInput, MalformedFile
from registry.api.deps import get_state
from registry.api.limits import UPLOAD_SETTING, too_large

# (method, path) of the routes that take multipart uploads; the body limit middleware lets these
# stream through at the upload limit instead of buffering them at the JSON limit.
UPLOAD_ROUTES = frozenset({("POST", "/v1/datasets"), ("POST", "/v1/patches")})
MAX_TEXT_BYTES = 64 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Form:
    texts: dict[str, str]
    files: dict[str, Path]  # field name -> its spooled file, named after the client's file name
    directory: Path  # private scratch space for the route, removed with the uploads

    def text(self, name: str) -> str:
        value = self.texts.get(name)
        if value is None or not value.strip():
            raise InvalidInput(f"form field {name!r} is required")
        return value.strip()

    def optional(self, name: str) -> str | None:
        value = self.texts.get(name, "").strip()
        return value or None


def multipart_doc(texts: dict[str, str], files: dict[str, str], required: Collection[str]) -> dict[str, Any]:
    """OpenAPI for a route that parses its own multipart body (FastAPI cannot infer it)."""
    properties: dict[str, Any] = {n: {"type": "string", "description": d} for n, d in texts.items()}
    properties |= {n: {"type": "string", "format": "binary", "description": d} for n, d in files.items()}
    # The route refuses a field it does not name, so the schema admits no others.
    schema = {
        "type": "object",
        "properties": properties,
        "required": sorted(required),
        "additionalProperties": False,
    }
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def safe_filename(name: str, fallback: str) -> str:
    """A client's file name reduced to something safe to create (it shows up in error messages)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base).lstrip(".")[:100]
    return cleaned or fallback


@dataclass
class _Spooler:
    """python-multipart callbacks: text parts kept (bounded), file parts written to `directory`."""

    directory: Path
    text_fields: Collection[str]
    file_fields: Collection[str]
    texts: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    pending: list[tuple[BinaryIO, bytes]] = field(default_factory=list)
    ended: bool = False
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _header_name: bytes = b""
    _header_value: bytes = b""
    _name: str = ""
    _text: bytearray = field(default_factory=bytearray)
    _out: BinaryIO | None = None
    _open: list[BinaryIO] = field(default_factory=list)

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _part_begin(self) -> None:
        self._headers, self._text, self._out = {}, bytearray(), None

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if not name:
            raise MalformedFile("a multipart part has no name in its Content-Disposition header")
        if name in self.texts or name in self.files:
            raise InvalidInput(f"form field {name!r} was sent twice")
        self._name = name
        if b"filename" in options:
            if name not in self.file_fields:
                raise InvalidInput(f"unexpected file field {name!r}; expected {_expected(self.file_fields)}")
            part_dir = self.directory / "parts" / name
            part_dir.mkdir(parents=True)
            filename = safe_filename(options[b"filename"].decode("utf-8", "replace"), name)
            self.files[name] = part_dir / filename
            self._out = open(self.files[name], "wb")  # noqa: SIM115 - closed in _part_end or close()
            self._open.append(self._out)
        elif name not in self.text_fields:
            raise InvalidInput(f"unexpected form field {name!r}; expected {_expected(self.text_fields)}")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._out is not None:
            self.pending.append((self._out, data[start:end]))
            return
        self._text += data[start:end]
        if len(self._text) > MAX_TEXT_BYTES:
            raise InvalidInput(f"form field {self._name!r} is longer than {MAX_TEXT_BYTES:,} bytes")

    def _part_end(self) -> None:
        if self._out is not None:
            self.pending.append((self._out, b""))  # b"": close after the pending writes
            return
        try:
            value = self._text.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"form field {self._name!r} is not valid UTF-8") from None
        self.texts[self._name] = inputs.text(value, f"form field {self._name!r}")

    def _end(self) -> None:
        self.ended = True

    def flush(self) -> None:
        """Write what the parser produced (run off the event loop: these are disk writes)."""
        for out, data in self.pending:
            if data:
                out.write(data)
            else:
                out.close()
        self.pending.clear()

    def close(self) -> None:
        for out in self._open:
            out.close()


def _expected(names: Collection[str]) -> str:
    return ", ".join(sorted(names)) or "none"


@asynccontextmanager
async def receive_form(
    request: Request, *, limit: int, texts: Collection[str], files: Collection[str]
) -> AsyncIterator[Form]:
    """Read the request's multipart body into a `Form`; its files exist only inside the block."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not params.get(b"boundary"):
        raise InvalidInput("expected a multipart/form-data body")
    directory = get_state(request).store.scratch.mkdtemp("spool-")
    spooler = _Spooler(directory, texts, files)
    try:
        try:
            parser = MultipartParser(params[b"boundary"], spooler.callbacks())  # type: ignore[arg-type]
            received = 0
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise too_large(limit, UPLOAD_SETTING)
                parser.write(chunk)
                if spooler.pending:
                    await run_in_threadpool(spooler.flush)
            parser.finalize()
        except FormParserError as exc:
            raise MalformedFile(f"malformed multipart body: {exc}") from None
        except ClientDisconnect:
            raise MalformedFile("the client disconnected before the upload was complete") from None
        if not spooler.ended:
            raise MalformedFile("the multipart body ended before its closing boundary")
        yield Form(spooler.texts, spooler.files, directory)
    finally:
        spooler.close()
        shutil.rmtree(directory, ignore_errors=True)
