"""Fingerprints of a step's run: what it was made from, so an unchanged step is not re-run.

A step's products depend on four things: its **inputs** (the target's manifest entry, the
raw frames and the files it names, and the products of the steps before it), its
**parameters**, its **notebook**, and the **package** that does the work. A fingerprint
is one SHA-256 over all four:

* the target: its manifest settings (without ``params``, which are per step) and the
  name, size and modification time of every raw frame and named file (reading 10 GB of
  raw frames to hash them would cost more than most steps);
* the parameters the step's notebook declares and the run gives it (a parameter of 05
  does not change 00-04's fingerprints);
* the notebook's cells (sources and types; not outputs or metadata);
* ``redux_helpers``' version and the text of its modules;
* the fingerprint of the step before it in the chain: a change upstream changes every
  fingerprint downstream, and only those.

After a step finishes, its record ``<products>/<target>/.redux/<step>.json`` holds the
fingerprint and the list of its products with their sizes. A step is current when its
record's fingerprint is the one it would have now and every listed product is still
there, the same size. A step that was interrupted has no record (it is written last,
whole), so the next run does it again: a rerun picks up where a run stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from . import __version__, products
from .atomic import write_text

RECORD_DIR = ".redux"


def _hash(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def notebook_digest(path) -> str:
    """SHA-256 of a notebook's cells: their types and sources only."""
    nb = json.loads(Path(path).read_text())
    return _hash([(c.get("cell_type"), "".join(c.get("source", ""))) for c in nb["cells"]])


_PACKAGE: dict = {}


def package_digest() -> str:
    """The package's version and the text of its modules (computed once per process)."""
    if "digest" not in _PACKAGE:
        here = Path(__file__).resolve().parent
        files = sorted(here.rglob("*.py"))      # subpackages (hii/, muse/, ...) included
        _PACKAGE["digest"] = _hash(__version__, [(f.relative_to(here).as_posix(), f.read_text())
                                                 for f in files])
    return _PACKAGE["digest"]


def _stat(path: Path):
    try:
        st = path.stat()
    except OSError:
        return [path.name, None]
    return [path.name, st.st_size, st.st_mtime_ns]


def target_digest(target) -> str:
    """The target's settings (``params`` aside) and the files they point to, by stat."""
    settings = {k: v for k, v in target.settings.items() if k != "params"}
    files = []
    raw = target.raw_dir
    if raw is not None and raw.is_dir():
        # every file below the raw folder, by its path there (frames in subfolders count)
        files += [[str(p.relative_to(raw)), *_stat(p)[1:]] for p in sorted(raw.rglob("*"))
                  if p.is_file()]

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and ("/" in value) and Path(value).is_file():
            files.append(_stat(Path(value)))

    walk(settings)
    return _hash(settings, files)


def step_fingerprint(step, *, notebook, params, target: str, upstream) -> str:
    """The fingerprint a run of ``step`` would have now (see the module's description).

    ``target`` is the `target_digest` (computed once per run), ``upstream`` the
    fingerprint of the step before (or '').
    """
    return _hash(step, notebook_digest(notebook), params, target, package_digest(),
                 upstream or "")


def clean_stale(root: Path, step: str):
    """Remove what a killed run of ``step`` left: temporary files, the running notebook.

    Products are written to ``.NAME.tmpPID`` and renamed (`fitsio.atomic_path`); a run
    killed mid-write leaves that temporary behind, never a half-written product.
    """
    folder = Path(root) / step
    if folder.is_dir():
        for p in folder.rglob(".*.tmp*"):
            p.unlink(missing_ok=True)
    (Path(root) / "notebooks" / f".{step}.running.ipynb").unlink(missing_ok=True)


def record_path(root: Path, step: str) -> Path:
    return Path(root) / RECORD_DIR / f"{step}.json"


def read_record(root: Path, step: str) -> dict | None:
    p = record_path(root, step)
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _products(root: Path, step: str) -> dict:
    """The step's product files (`redux_helpers.products`) and its executed notebook, with sizes."""
    files = {str(p.relative_to(root)): p.stat().st_size
             for p in products.files_of(Path(root) / step, step)}
    nb = Path(root) / "notebooks" / f"{step}.ipynb"
    if nb.is_file():
        files[str(nb.relative_to(root))] = nb.stat().st_size
    return files


def write_record(root: Path, step: str, *, fingerprint: str, seconds: float):
    """Record a finished step (written whole, after its products)."""
    rec = {"step": step, "fingerprint": fingerprint, "seconds": round(seconds, 2),
           "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "products": _products(root, step)}
    path = record_path(root, step)
    write_text(path, json.dumps(rec, indent=1))


def is_current(root: Path, step: str, fingerprint: str) -> bool:
    """The step's record has this fingerprint and its products are all there, unchanged."""
    rec = read_record(root, step)
    if not rec or rec.get("fingerprint") != fingerprint:
        return False
    for rel, size in rec.get("products", {}).items():
        p = Path(root) / rel
        if not p.is_file() or p.stat().st_size != size:
            return False
    return True


def forget(root: Path, step: str):
    """Drop a step's record (before it runs again: a failed rerun must not look done)."""
    record_path(root, step).unlink(missing_ok=True)
