"""Server paths never reach a client: error messages name the input, not where the server keeps it.

Messages are written for the CLI, where a full path is the user's own and helps; over HTTP the
same message would tell a caller how the server's disk is laid out (temp spools, the store, the
home directory). `Redactor` replaces any path under those directories with its last component
(`/srv/store/tmp/spool-x/adapter_config.json` -> `adapter_config.json`), and the bare directory
itself with `<server path>`, in the message and in the detail.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HIDDEN = "<server path>"
_PATH_CHARS = r"[^\s'\"`,;:()\[\]{}<>]"


class Redactor:
    def __init__(self, roots: Iterable[Path]) -> None:
        names: set[str] = set()
        for root in roots:
            for form in (Path(root), Path(root).resolve()):
                text = str(form).rstrip("/")
                if len(text) > 1:  # never "/" itself: every absolute path would go
                    names.add(text)
        alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        self._pattern = (
            re.compile(rf"(?:{alternatives})(?P<rest>/{_PATH_CHARS}*)?(?!{_PATH_CHARS})") if names else None
        )

    @classmethod
    def for_server(cls, *directories: Path) -> Redactor:
        """The server's own directories plus the system temp directory and the user's home."""
        return cls([*directories, Path(tempfile.gettempdir()), Path.home()])

    def text(self, value: str) -> str:
        if self._pattern is None:
            return value
        return self._pattern.sub(_replacement, value)

    def value(self, value: Any) -> Any:
        """`text` applied to every string inside a JSON-like value."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


def _replacement(match: re.Match[str]) -> str:
    rest = (match.group("rest") or "").rstrip("/")
    return rest.rsplit("/", 1)[-1] or HIDDEN if rest else HIDDEN
