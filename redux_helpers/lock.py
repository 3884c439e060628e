"""One run at a time writes into a target's products: a lock file per products folder.

``<products>/<target>/.redux/lock`` holds who runs (pid, host, start time, command).
It is made with ``O_CREAT | O_EXCL``, so of two runs that start together exactly one
gets it; the other stops with a message naming the running one. A lock whose process
is gone (same host, pid not alive) is stale: it is taken over, and the caller is told.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from .errors import ReduxError

log = logging.getLogger(__name__)

LOCK_NAME = "lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # someone else's process: alive
        return True
    return True


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def products_lock(root, *, notes=None):
    """Hold the lock of a target's products folder ``root`` for the duration.

    Parameters
    ----------
    root : path-like
        ``<products>/<target>``; its ``.redux/`` folder is made if needed.
    notes : list, optional
        Gets a sentence when a stale lock was taken over.

    Raises
    ------
    ReduxError
        Another live run holds the lock (its pid, host and start time are named).
    """
    folder = Path(root) / ".redux"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            other = _read(path)
            pid, host = int(other.get("pid", -1) or -1), other.get("host", "?")
            if host == me["host"] and pid > 0 and not _alive(pid):
                note = (f"took over the lock of a run that is gone (pid {pid}, started "
                        f"{other.get('started', '?')}): its unfinished step is done again")
                log.warning(note)
                if notes is not None:
                    notes.append(note)
                path.unlink(missing_ok=True)
                continue
            msg = (f"another redux run is writing into {Path(root)}: pid {pid} on {host}, "
                   f"started {other.get('started', '?')} ({other.get('command', '')}). Wait "
                   f"for it to finish, or choose another --products; if that run is dead on "
                   f"another machine, remove {path}")
            raise ReduxError(msg) from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        yield path
    finally:
        if _read(path).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)
