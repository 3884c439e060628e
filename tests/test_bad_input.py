"""Bad input, case by case: one message naming the file or key, no traceback, raw frames
never written, no half-written product left.

Each case runs the ``redux`` command (in-process through `cli.main`, as test_batch does,
or as a subprocess where a process of its own is the point) on a copy of a tiny demo
night (64 x 64). Almost every case stops before the first notebook; the frame-level
cases share one 00 run per night (each case's night holds several bad frames, and 00
names them all in one message), so the file runs in about a minute.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from redux_helpers import cli, demo, lock
from tests.conftest import REPO, write_manifest

NO_THUMBS = ["-p", "show_thumbnails=false"]


def redux(*args, cwd=None):
    """The command as a user runs it, in a process of its own."""
    return subprocess.run([sys.executable, "-m", "redux_helpers.cli", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def run(*args):
    """``redux ARGS`` in this process: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main([str(a) for a in args])
        except SystemExit as exc:          # argparse's own refusals
            status = exc.code
    assert "Traceback" not in out.getvalue() + err.getvalue()
    return status, out.getvalue(), err.getvalue()


def checksums(raw: Path) -> dict:
    """sha256 of every file under a raw folder, by its path there."""
    return {str(p.relative_to(raw)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(raw.rglob("*")) if p.is_file()}


def assert_clean(raw: Path, before: dict, products: Path):
    """Raw frames unchanged, and no temporary or half-written file among the products."""
    assert checksums(raw) == before
    if products.exists():
        left = [p for p in products.rglob("*")
                if ".tmp" in p.name or p.name.endswith(".running.ipynb")]
        assert not left


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 64 x 64 demo night (3 bias, 3 flats and 2 lights per filter, standards)."""
    root = tmp_path_factory.mktemp("tiny") / "demo"
    demo.ensure_demo(root, demo.DemoConfig(size=64, n_bias=3, n_dark=0, n_flat=3, n_light=2))
    return root / "raw"


def _copy(tiny, work: Path) -> Path:
    shutil.copytree(tiny, work / "raw")
    return work / "raw"


def _manifest(raw: Path) -> Path:
    """The manifest beside a raw folder: target ``n`` with that raw_dir only."""
    return write_manifest(raw.parent / "m.yaml", {"n": {"raw_dir": str(raw)}})


@pytest.fixture
def night(tiny, tmp_path):
    """A copy of the tiny night and its manifest: (raw, manifest, products)."""
    raw = _copy(tiny, tmp_path)
    return raw, _manifest(raw), tmp_path / "products"


def _edit(path: Path, **cards):
    """Rewrite a frame with header cards set (None deletes one)."""
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        data, header = hdul[0].data.copy(), hdul[0].header.copy()
    for key, value in cards.items():
        if value is None:
            header.remove(key, ignore_missing=True)
        else:
            header[key] = value
    fits.writeto(path, data, header, overwrite=True, output_verify="silentfix")


def _pixels(path: Path, out: Path, change):
    """Write ``out``: the frame ``path`` with its pixels (float ADU) changed by ``change``."""
    with fits.open(path) as hdul:
        data, header = hdul[0].data.astype(np.float32), hdul[0].header.copy()
    for key in ("BZERO", "BSCALE"):
        header.remove(key, ignore_missing=True)
    fits.writeto(out, change(data), header, overwrite=True)


def run00(raw, manifest, products):
    """Step 00 alone on a night: (status, stdout, stderr), raw and products checked."""
    before = checksums(raw)
    status, out, err = run("run", "n", "--manifest", manifest, "--products", products,
                           "--only", "00", "--no-html", *NO_THUMBS)
    assert_clean(raw, before, products)
    return status, out, err


# ---- frames 00 can't read: one run, every file named -------------------------------
UNREADABLE = {
    "truncated FITS": ("ngc_demo_R_002.fits", "is truncated"),
    "empty file": ("empty.fits", "empty.fits is not a readable FITS file"),
    "not FITS, named .fits": ("notes.fits", "notes.fits is not a readable FITS file"),
    "fits.gz with a bad CRC, full length": ("ngc_demo_Ha_002.fits.gz", "CRC check failed"),
    "a redux product among the raw frames": ("superbias.fits", "is a product of redux"),
}


@pytest.fixture(scope="module")
def unreadable(tiny, tmp_path_factory):
    raw = _copy(tiny, tmp_path_factory.mktemp("unreadable"))
    p = raw / "ngc_demo_R_002.fits"
    p.write_bytes(p.read_bytes()[:-2880])
    (raw / "empty.fits").write_bytes(b"")
    (raw / "notes.fits").write_text("observing log: clouds at 23h\n")
    src = raw / "ngc_demo_Ha_002.fits"
    packed = bytearray(gzip.compress(src.read_bytes()))
    packed[-6] ^= 0x55                                   # the CRC32 of the gzip trailer
    (raw / "ngc_demo_Ha_002.fits.gz").write_bytes(bytes(packed))
    src.unlink()
    hdr = fits.Header({"REDXSTEP": "01_superbias"})
    fits.writeto(raw / "superbias.fits", np.zeros((64, 64), np.float32), hdr)
    return run00(raw, _manifest(raw), raw.parent / "products")


@pytest.mark.notebooks
@pytest.mark.parametrize("case", UNREADABLE)
def test_unreadable_frame_is_named_by_00(unreadable, case):
    status, _, err = unreadable
    name, what = UNREADABLE[case]
    assert status == 2 and "00_inspect: " in err and "can't be used" in err
    line = next(x for x in err.splitlines() if name in x)
    assert what in line


# ---- frames 00 reads but refuses: one run, every file named ------------------------
def _nan_rows(d):
    d[10:20] = np.nan
    return d


REFUSED = {
    "two frame sizes among lights": ("small.fits", "2 raw sizes", lambda d: d[:48]),
    "a light with NaN rows": ("nanrows.fits", "of its pixels are NaN", _nan_rows),
    "a fully saturated light": ("saturated.fits", "100 % of its pixels are saturated", None),
    "missing EXPTIME": ("noexp.fits", "no exposure time keyword", None),
    "a light without a filter": ("nofilter.fits", "have no filter", None),
}


@pytest.fixture(scope="module")
def refused(tiny, tmp_path_factory):
    raw = _copy(tiny, tmp_path_factory.mktemp("refused"))
    src = raw / "ngc_demo_R_001.fits"
    for name, _, change in REFUSED.values():
        if change:
            _pixels(src, raw / name, change)
    with fits.open(src, do_not_scale_image_data=True) as hdul:    # 32767 + BZERO 32768
        fits.writeto(raw / "saturated.fits", np.full_like(hdul[0].data, 32767),
                     hdul[0].header)
    shutil.copy(src, raw / "noexp.fits")
    _edit(raw / "noexp.fits", EXPTIME=None)
    shutil.copy(src, raw / "nofilter.fits")
    _edit(raw / "nofilter.fits", FILTER=None)
    return run00(raw, _manifest(raw), raw.parent / "products")


@pytest.mark.notebooks
@pytest.mark.parametrize("case", REFUSED)
def test_refused_frame_is_named_by_00(refused, case):
    status, _, err = refused
    name, what, _ = REFUSED[case]
    assert status == 2 and "problem(s) stop the reduction of n" in err
    line = next(x for x in err.splitlines() if name in x and what in x)
    assert line.strip().startswith("- ")


# ---- odd nights 00 lets through, saying so: one run, exit 0 --------------------------
WARNED = {
    "no bias frames": "no bias frames",
    "no flats (of Ha)": "filter Ha has lights but no flats",
    "mixed binning": "flat frames have mixed binning: 1x1 (3), 2x2 (1)",
    "a flat with a zero region": "flat_R_002.fits: flat has pixels at or below 0 ADU",
    "unknown frame type": "arc.fits: IMAGETYP 'ARC' is not a frame type redux knows",
}


@pytest.fixture(scope="module")
def warned(tiny, tmp_path_factory):
    """No bias, no Ha flats, a 2x2 flat, a zeroed flat corner, an ARC frame, a V flat
    without V lights, a light without IMAGETYP, two lights of one name in subfolders."""
    raw = _copy(tiny, tmp_path_factory.mktemp("warned"))
    for p in [*raw.glob("bias_*"), *raw.glob("flat_Ha_*")]:
        p.unlink()
    _edit(raw / "flat_R_003.fits", XBINNING=2, YBINNING=2)

    def corner(d):
        d[:8, :8] = 0.0
        return d

    _pixels(raw / "flat_R_002.fits", raw / "flat_R_002.fits", corner)
    shutil.copy(raw / "ngc_demo_Ha_001.fits", raw / "arc.fits")
    _edit(raw / "arc.fits", IMAGETYP="ARC", OBJECT="HeNeAr")
    shutil.copy(raw / "flat_R_001.fits", raw / "flat_V_001.fits")
    _edit(raw / "flat_V_001.fits", FILTER="V")
    _edit(raw / "ngc_demo_R_001.fits", IMAGETYP=None)
    (raw / "night2").mkdir()
    shutil.move(raw / "ngc_demo_R_002.fits", raw / "night2" / "ngc_demo_R_001.fits")
    return (*run00(raw, _manifest(raw), raw.parent / "products"),
            raw.parent / "products" / "n")


@pytest.mark.notebooks
@pytest.mark.parametrize("case", WARNED)
def test_odd_night_passes_00_with_a_warning(warned, case):
    from redux_helpers import fitsio

    status, out, err, root = warned
    assert status == 0, err
    assert "0 error(s), " in out                  # the terminal's summary of 00's problems
    problems = fitsio.read_table(root / "00_inspect" / "problems.ecsv")
    said = [f"{r['file']}: {r['problem']}" if r["file"] else r["problem"] for r in problems]
    assert any(WARNED[case] in x for x in said), said


@pytest.mark.notebooks
def test_missing_imagetyp_flat_without_lights_and_same_name_in_subfolders(warned):
    """A light without IMAGETYP is a light (OBJECT); a V flat with no V light is harmless;
    night2/ngc_demo_R_001.fits and ngc_demo_R_001.fits are two frames, both kept (the
    whole chain on such a night: test_night_contract)."""
    from redux_helpers import fitsio

    status, _, _, root = warned
    inv = fitsio.read_table(root / "00_inspect" / "inventory.ecsv")
    kinds = dict(zip(inv["file"], inv["frametype"], strict=True))
    assert status == 0
    assert kinds["ngc_demo_R_001.fits"] == "light" and kinds["flat_V_001.fits"] == "flat"
    assert kinds["night2/ngc_demo_R_001.fits"] == "light"


@pytest.mark.notebooks
def test_no_lights_stops_00(night):
    raw, m, products = night
    for p in [*raw.glob("ngc_*"), *raw.glob("std_*")]:
        p.unlink()
    status, _, err = run00(raw, m, products)
    assert status == 2 and "no light frames among the 9 readable frames" in err


@pytest.mark.notebooks
def test_empty_raw_dir_stops_00(night):
    raw, m, products = night
    shutil.rmtree(raw)
    raw.mkdir()
    status, _, err = run00(raw, m, products)
    assert status == 2 and f"no FITS files (.fits, .fit, .fts, .fits.gz) found under {raw}" in err


# ---- refused before any notebook runs ----------------------------------------------
def _bad_manifest(tmp_path, raw, entry_or_text):
    m = tmp_path / "bad.yaml"
    if isinstance(entry_or_text, str):
        m.write_text(entry_or_text.replace("RAW", str(raw)))
        return m
    return write_manifest(m, {"n": {"raw_dir": str(raw), **entry_or_text}})


MANIFESTS = {
    "unknown key, the right one suggested": ({"gian": 1.6},
                                             "unknown key 'targets.n.gian' (did you mean 'gain'?)"),
    "YAML syntax error": ("targets:\n  n:\n    raw_dir: RAW\n   gain: [1.6\n", "is not valid YAML"),
    "header_overrides EXPTIME abc": ({"header_overrides": {"f.fits": {"EXPTIME": "abc"}}},
                                     "'targets.n.header_overrides.f.fits.EXPTIME' is 'abc'"),
    "non-ASCII override": ({"header_overrides": {"*": {"OBSERVER": "Zoë"}}},
                           "'targets.n.header_overrides.*.OBSERVER' is 'Zoë': FITS headers "
                           "hold ASCII text only"),
    "demo: {size: 0}": ({"demo": {"size": 0}}, "'targets.n.demo.size' is 0; it must be from 64"),
    "raw_dir missing": ({"raw_dir": "no/such/night"}, "no/such/night, which does not exist"),
    "a gain of the wrong type": ({"gain": "high"}, "'targets.n.gain' should be a number"),
    "raw_dir a file": ({"raw_dir": "raw/bias_001.fits"}, "bias_001.fits, which is a file, "
                       "not a folder"),
    "standards missing": ({"standards": "std.ecsv"}, "std.ecsv, which does not exist"),
}


@pytest.mark.parametrize("case", MANIFESTS)
def test_bad_manifest_is_refused_naming_the_key(night, case):
    raw, _, products = night
    entry, what = MANIFESTS[case]
    m = _bad_manifest(raw.parent, raw, entry)
    before = checksums(raw)
    status, _, err = run("run", "n", "--manifest", m, "--products", products)
    assert status == 2 and what in err and str(m.resolve()) in err
    assert not products.exists()
    assert_clean(raw, before, products)


COMMANDS = {
    "unknown target": (["run", "nn"], "target 'nn' is not in", 2),
    "unknown parameter -p foo=1": (["run", "n", "-p", "foo=1"],
                                   "unknown notebook parameter 'foo'", 2),
    "parameter of the wrong type": (["run", "n", "-p", "sigma=abc"],
                                    "parameter 'sigma' should be float", 2),
    "-p without =": (["run", "n", "-p", "sigma"], "should look like NAME=VALUE", 2),
    "-p products=...": (["run", "n", "-p", "products=/tmp/x"], "-p products=... can't be set", 2),
    "-p target=...": (["run", "n", "-p", "target=m"], "-p target=... can't be set", 2),
    "-p manifest=...": (["run", "n", "-p", "manifest=x.yaml"], "-p manifest=... can't be set", 2),
    "--only unknown step": (["run", "n", "--only", "00,42"], "no step numbered 42", 2),
    "--from unknown step": (["run", "n", "--from", "77"], "--from 77: no step numbered 77", 2),
    "--from with --only": (["run", "n", "--only", "00", "--from", "01"],
                           "not allowed with argument --only", 2),
    "batch --workers 0": (["batch", "n", "--workers", "0"], "--workers 0: a local cluster "
                          "needs at least 1 worker process", 2),
    "batch --workers -3": (["batch", "n", "--workers", "-3"], "--workers -3", 2),
    "batch without targets": (["batch"], "name the targets to run (or --all", 2),
    "batch unknown target": (["batch", "n", "nn"], "target 'nn' is not in", 2),
    "batch --params missing": (["batch", "n", "--params", "/no/such/params.yaml"],
                               "/no/such/params.yaml: can't read the parameters file", 2),
}


@pytest.mark.parametrize("case", COMMANDS)
def test_bad_command_line_is_refused(night, case):
    raw, m, products = night
    args, what, code = COMMANDS[case]
    before = checksums(raw)
    status, _, err = run(*args, "--manifest", m, "--products", products)
    assert status == code and what in err
    assert not (products / "n" / "notebooks" / "00_inspect.ipynb").exists()
    assert_clean(raw, before, products)


def test_batch_params_file_not_yaml(night):
    raw, m, products = night
    params = raw.parent / "params.yaml"
    params.write_text("sigma: [2.5\n")
    status, _, err = run("batch", "n", "--manifest", m, "--products", products,
                         "--params", params)
    assert status == 2 and f"{params}: can't read the parameters file" in err
    assert not products.exists()


@pytest.mark.parametrize("size", [0, -5, 7, 9000])
def test_demo_size_out_of_range(tmp_path, size):
    status, _, err = run("demo", "--size", size, "--root", tmp_path / "d")
    assert status == 2 and f"--size {size}: a demo night is 64 to 8192 pixels" in err
    assert not (tmp_path / "d").exists()


def test_products_that_is_a_file(night):
    raw, m, products = night
    products.write_text("not a folder")
    status, _, err = run("run", "n", "--manifest", m, "--products", products)
    assert status == 2 and f"{products} is a file, not a folder" in err
    assert products.read_text() == "not a folder"


def test_products_inside_raw_through_a_symlinked_raw_dir(night, tmp_path):
    raw, _, _ = night
    link = tmp_path / "link"
    link.symlink_to(raw)
    m = write_manifest(tmp_path / "l.yaml", {"n": {"raw_dir": str(link.absolute())}})
    before = checksums(raw)
    status, _, err = run("run", "n", "--manifest", m, "--products", raw / "products")
    assert status == 2 and f"is inside the raw folder {raw}" in err
    assert "symlinks resolved" in err
    assert not (raw / "products").exists() and checksums(raw) == before


@pytest.mark.parametrize("where", ["", "04_calibrate"])
def test_raw_dir_that_is_another_targets_products(night, tmp_path, where):
    raw, _, products = night
    other = tmp_path / "other" / "n"
    (other / ".redux").mkdir(parents=True)            # as every run of a target leaves it
    (other / "04_calibrate").mkdir()
    shutil.copy(raw / "ngc_demo_R_001.fits", other / "04_calibrate" / "ngc_demo_R_001.fits")
    bad = other / where
    m = write_manifest(tmp_path / "o.yaml", {"n": {"raw_dir": str(bad)}})
    status, _, err = run("run", "n", "--manifest", m, "--products", products)
    assert status == 2 and f"raw_dir {bad.resolve()} is (inside) a redux products folder" in err
    assert not (products / "n" / "notebooks" / "00_inspect.ipynb").exists()


@contextlib.contextmanager
def tmpfs(folder: Path, options: str):
    """A tmpfs mounted on ``folder`` for the block; the test skips where mount is refused."""
    folder.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"mount -t tmpfs not allowed here: {r.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_read_only_products_folder(night, tmp_path):
    """A read-only file system (root writes through chmod, not through ro)."""
    raw, m, _ = night
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        status, _, err = run("run", "n", "--manifest", m, "--products", ro / "p")
    assert status == 2 and f"products folder {ro / 'p' / 'n' / 'notebooks'} can't be made: " \
        "Read-only file system" in err


# ---- one run at a time --------------------------------------------------------------
def test_a_second_run_of_one_target_stops_naming_the_first(night):
    raw, m, products = night
    with lock.products_lock(products / "n"):
        status, _, err = run("run", "n", "--manifest", m, "--products", products, "--only", "00")
    assert status == 2
    assert (f"another redux run is writing into {products / 'n'}: pid {os.getpid()} on "
            f"{socket.gethostname()}, started {time.strftime('%Y-%m-%d')}") in err
    assert not (products / "n" / "notebooks" / "00_inspect.ipynb").exists()
    assert not (products / "n" / ".redux" / "lock").exists()


# ---- a full disk --------------------------------------------------------------------
def test_disk_full_simulated(night, monkeypatch):
    """ENOSPC while papermill writes the notebook: the half notebook is not kept."""
    import papermill

    raw, m, products = night

    def full(_src, out, **_kw):
        Path(out).write_text('{"cells": [')            # half a notebook, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(papermill, "execute_notebook", full)
    before = checksums(raw)
    status, _, err = run("run", "n", "--manifest", m, "--products", products, "--only", "00")
    assert status == 2 and "00_inspect: no space left on the device of " in err and "MB free" in err
    notebooks = products / "n" / "notebooks"
    assert not list(notebooks.iterdir())
    assert_clean(raw, before, products)


@pytest.mark.notebooks
def test_disk_full_on_a_small_tmpfs(night, tmp_path):
    """A real full disk: products on a 3 MB tmpfs, filled but for a few kB."""
    raw, m, _ = night
    with tmpfs(tmp_path / "small", "size=3m") as small:
        products = small / "p"
        (products / "n" / "notebooks").mkdir(parents=True)
        free = shutil.disk_usage(small).free
        (small / "filler").write_bytes(b"\0" * (free - 24 * 1024))
        before = checksums(raw)
        status, _, err = run("run", "n", "--manifest", m, "--products", products, "--only", "00",
                             "--no-html", *NO_THUMBS)
        assert status == 2 and "00_inspect: no space left on the device of " in err
        assert not (products / "n" / "notebooks" / "00_inspect.ipynb").exists()
        assert_clean(raw, before, products)


# ---- a normal run, as a user starts it -------------------------------------------------
@pytest.mark.notebooks
def test_a_normal_run_is_quiet_and_takes_over_a_dead_runs_lock(night):
    """The command in a process of its own: nothing on stderr (no kernel noise), and the
    lock a killed run left behind (its pid gone) is taken over, saying so."""
    raw, m, products = night
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (products / "n" / ".redux").mkdir(parents=True)
    (products / "n" / ".redux" / "lock").write_text(
        f'{{"pid": {dead.pid}, "host": "{socket.gethostname()}", '
        '"started": "2026-01-01T00:00:00+0000", "command": "redux run n"}')
    before = checksums(raw)
    r = redux("run", "n", "--manifest", str(m), "--products", str(products), "--only", "00",
              "--no-html", *NO_THUMBS)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""                      # no [IPKernelApp] ERROR, no KeyboardInterrupt
    assert f"took over the lock of a run that is gone (pid {dead.pid}, started " \
           "2026-01-01T00:00:00+0000)" in r.stdout
    assert (products / "n" / "00_inspect" / "inventory.ecsv").is_file()
    assert not (products / "n" / ".redux" / "lock").exists()
    assert_clean(raw, before, products)


# ---- a batch whose worker is killed ---------------------------------------------------
def _cmdline(proc):
    """A process's command line; empty for one that is gone or a zombie (an earlier test's
    child not yet reaped), which psutil refuses to read."""
    import psutil

    try:
        return proc.cmdline()
    except (psutil.ZombieProcess, psutil.NoSuchProcess, psutil.AccessDenied):
        return []


@pytest.mark.notebooks
def test_a_killed_batch_worker_fails_its_target_and_takes_its_kernel_along(night):
    """kill -9 of the worker while its target's 00 runs: the summary reports that target
    as failed (no silent retry), and its notebook kernel is gone too."""
    import psutil

    from redux_helpers import batch

    raw, m, products = night
    result = {}

    def go():
        result["s"] = batch.run_batch(["n"], manifest=m, products=products, workers=1,
                                      only="00", html=False)

    thread = threading.Thread(target=go)
    thread.start()
    t0, kernel = time.time(), None
    while kernel is None:
        assert time.time() - t0 < 60 and thread.is_alive()
        kernel = next((p for p in psutil.Process().children(recursive=True)
                       if "ipykernel" in " ".join(_cmdline(p))), None)
        time.sleep(0.1)
    worker = kernel.parent()
    worker.send_signal(signal.SIGKILL)
    thread.join(timeout=60)
    assert not thread.is_alive()
    (s,) = result["s"]
    assert not s.ok and s.failed == "worker" and "worker process running it died" in s.reason
    row = batch.summary_table([s]).splitlines()[1]
    assert row.startswith("n ") and "FAILED (worker)" in row
    kernel.wait(timeout=10)          # ipykernel's parent poller: gone within 1 s
    assert not kernel.is_running()
    assert not (products / "n" / "00_inspect" / "inventory.ecsv").exists()
