"""Which server the CLI talks to: flags, environment, and the credentials `patchreg login` stores.

Which registry a command uses, first match wins:
1. `--server URL` (token: `--token`, else $PATCHREG_TOKEN, else the stored one for that URL);
2. `--home` or `--db`: this machine's registry, whatever else is set;
3. $PATCHREG_URL (token: $PATCHREG_TOKEN, else the stored one for that URL);
4. the credentials `patchreg login` stored;
5. this machine's registry ($PATCHREG_HOME, $PATCHREG_DATABASE_URL).

Standard library only: every command starts here, and the client (httpx) loads only when a command
goes to a server (`cli.remote`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Remote:
    url: str
    token: str | None


def credentials_file() -> Path:
    """$PATCHREG_CONFIG_DIR/credentials, else $XDG_CONFIG_HOME/patchreg/credentials (~/.config)."""
    configured = os.environ.get("PATCHREG_CONFIG_DIR")
    if configured:
        return Path(configured).expanduser() / "credentials"
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg).expanduser() / "patchreg" / "credentials"


def stored() -> Remote | None:
    path = credentials_file()
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return Remote(str(data["url"]), data.get("token") or None)


def store(remote: Remote) -> Path:
    """Write the credentials readable by this user only: created 0600 (never wider, even for a
    moment) in a 0700 directory, then renamed over the old file."""
    path = credentials_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps({"url": remote.url, "token": remote.token}) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def choose(server: str | None, token: str | None, local_flags: bool) -> Remote | None:
    """The server this invocation talks to, or None for the local registry (see the module doc)."""
    url = server or (None if local_flags else os.environ.get("PATCHREG_URL"))
    saved = stored() if url or not local_flags else None
    if url is None:
        if local_flags or saved is None:
            return None
        url = saved.url
    url = url.rstrip("/")
    secret = token or os.environ.get("PATCHREG_TOKEN") or None
    if secret is None and saved is not None and saved.url.rstrip("/") == url:
        secret = saved.token
    return Remote(url, secret)
