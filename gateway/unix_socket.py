"""Listening on a Unix domain socket (`uds`), for a sidecar on the same host.

Who may connect: whoever may write to the socket file and search its directory.
The gateway creates the file with mode 0o660 (its owner and group may connect),
whatever the umask; the directory's own permissions narrow that further. A
socket file left at the path by a gateway that died (nothing answers on it) is
replaced; a socket that a server answers on, or any other file, stops the
start-up. The gateway removes the file when it exits.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
from pathlib import Path

from gateway.config_errors import ConfigError

SOCKET_MODE = 0o660
log = logging.getLogger(__name__)


def unix_listener(path: Path) -> socket.socket:
    """A stream socket bound to `path` (not yet listening: uvicorn does that)."""
    _clear(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # bind creates the file as 0o777 less the umask: this umask makes it SOCKET_MODE from
    # its first moment, with no window before a chmod. Start-up runs no other thread yet.
    previous = os.umask(0o777 & ~SOCKET_MODE)
    try:
        listener.bind(str(path))
    except OSError as error:
        listener.close()
        raise ConfigError(f"uds {path}: cannot listen there: {error.strerror}") from None
    finally:
        os.umask(previous)
    log.info("serving on the unix socket %s once started (mode %o)", path, SOCKET_MODE)
    return listener


def _clear(path: Path) -> None:
    """Remove a stale socket file at `path`; refuse anything else found there."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"uds {path} exists and is not a socket; give a free path")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            path.unlink()  # nothing listens: a gateway that died left it
            return
        except OSError as error:
            raise ConfigError(f"uds {path}: cannot use it: {error.strerror}") from None
    raise ConfigError(f"uds {path}: another server is listening on it")
