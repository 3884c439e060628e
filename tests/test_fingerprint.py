"""Fingerprints of steps: what changes one, what doesn't, and when a step is current."""

import json
import os

from redux_helpers import fingerprint
from redux_helpers.manifest import Target


def _nb(path, source, outputs=()):
    cell = {"cell_type": "code", "source": source, "metadata": {}, "outputs": list(outputs),
            "execution_count": 3}
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}))
    return path


def test_notebook_digest_sees_sources_not_outputs(tmp_path):
    a = _nb(tmp_path / "a.ipynb", "x = 1")
    b = _nb(tmp_path / "b.ipynb", "x = 1", outputs=[{"output_type": "stream", "text": "hi"}])
    c = _nb(tmp_path / "c.ipynb", "x = 2")
    assert fingerprint.notebook_digest(a) == fingerprint.notebook_digest(b)
    assert fingerprint.notebook_digest(a) != fingerprint.notebook_digest(c)


def test_what_changes_a_fingerprint(tmp_path):
    nb = _nb(tmp_path / "s.ipynb", "x = 1")
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "f1.fits").write_bytes(b"a" * 100)
    t = Target("t", tmp_path / "m.yaml", {"raw_dir": str(raw), "gain": 1.6, "params": {"a": 1}})
    digest = fingerprint.target_digest(t)

    def fp(params=None, target=digest, upstream="u"):
        return fingerprint.step_fingerprint("01_superbias", notebook=nb, params=params or {},
                                            target=target, upstream=upstream)

    base = fp()
    assert fp() == base                                     # deterministic
    assert fp(params={"sigma": 2.5}) != base                # a parameter
    assert fp(upstream="v") != base                         # the step before
    # the target's params are per step, not part of the target's digest
    t2 = Target("t", t.manifest, {**t.settings, "params": {"a": 2}})
    assert fingerprint.target_digest(t2) == digest
    t3 = Target("t", t.manifest, {**t.settings, "gain": 2.0})
    assert fingerprint.target_digest(t3) != digest          # a setting
    st = (raw / "f1.fits").stat()
    os.utime(raw / "f1.fits", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert fingerprint.target_digest(t) != digest           # a raw frame touched


def test_current_means_same_fingerprint_and_products_all_there(tmp_path):
    root = tmp_path / "products" / "t"
    (root / "01_superbias").mkdir(parents=True)
    product = root / "01_superbias" / "superbias.fits"
    product.write_bytes(b"x" * 2880)
    fingerprint.write_record(root, "01_superbias", fingerprint="abc", seconds=1.5)
    assert fingerprint.is_current(root, "01_superbias", "abc")
    assert not fingerprint.is_current(root, "01_superbias", "abd")
    product.write_bytes(b"x" * 5760)                         # changed since
    assert not fingerprint.is_current(root, "01_superbias", "abc")
    product.unlink()                                         # gone
    assert not fingerprint.is_current(root, "01_superbias", "abc")
    fingerprint.forget(root, "01_superbias")
    assert fingerprint.read_record(root, "01_superbias") is None
    # what a killed run leaves is cleaned before the step runs again
    stale = root / "01_superbias" / ".superbias.fits.tmp4242"
    stale.write_bytes(b"half")
    (root / "notebooks").mkdir()
    running = root / "notebooks" / ".01_superbias.running.ipynb"
    running.write_text("{}")
    fingerprint.clean_stale(root, "01_superbias")
    assert not stale.exists() and not running.exists()
