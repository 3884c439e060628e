"""Which calibration frames go with which frame, and loading them.

Masters are written by notebooks 01 and 02 under fixed names::

    01_superbias/superbias.fits              ADU, overscan removed
    02_superflat/superdark_<temp>C.fits      e-/s (listed in superdarks.ecsv)
    02_superflat/superflat_<filter>.fits     normalised to 1 in the centre
    02_superflat/camera.ecsv                 gain and read noise, their errors and source

All masters of a run share the binning of the night's lights.

A superdark is matched to a frame by binning and gain exactly and by CCD temperature
within a tolerance (dark current doubles every ~6 deg C, so a dark from a warmer chip
over-subtracts); `match_dark` says which one was chosen and why.

A notebook calibrates every frame of a night with the same few masters, so
`load_masters` (and `masters_for`) keep the last few masters read in this process and
read a file again only when it changed (path, inode, size and modification time): one
read per master and notebook instead of one per frame. Their arrays are read-only,
since one array serves many frames.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import numpy as np
from astropy.table import Table

from .calibrate import Masters
from .fitsio import read_product, read_table
from .gain import fill_inventory, require_camera
from .masks import has
from .product_names import filter_part

log = logging.getLogger(__name__)


def superbias_path(paths) -> Path:
    """``01_superbias/superbias.fits``."""
    return paths.step("01_superbias") / "superbias.fits"


def superdark_path(paths, temp) -> Path:
    """``02_superflat/superdark_<temp>C.fits`` (``superdark.fits`` with no temperature)."""
    if temp is None or not np.isfinite(temp):
        return paths.step("02_superflat") / "superdark.fits"
    return paths.step("02_superflat") / f"superdark_{temp:+.0f}C.fits"


def superdarks_table_path(paths) -> Path:
    """``02_superflat/superdarks.ecsv``: every superdark with its binning, gain, temperature."""
    return paths.step("02_superflat") / "superdarks.ecsv"


def superflat_path(paths, filt) -> Path:
    """``02_superflat/superflat_<filter>.fits``."""
    return paths.step("02_superflat") / f"superflat_{filter_part(filt)}.fits"


def camera_path(paths) -> Path:
    """``02_superflat/camera.ecsv``: the gain and read noise every later step uses."""
    return paths.step("02_superflat") / "camera.ecsv"


def read_camera(paths) -> Table | None:
    """02's camera table (`gain.camera_table`), or None before 02 has run."""
    p = camera_path(paths)
    return Table.read(p, format="ascii.ecsv") if p.is_file() else None


def read_inventory(paths, *, need_camera=True) -> Table:
    """00's inventory with the gain and read noise 02 measured where the headers had none.

    Every notebook after 02 reads the inventory through this, so none sees a NaN gain.
    With ``need_camera`` a frame still without a gain or read noise is a `ReduxError`
    naming the manifest lines to add; without it (notebook 01, before 02 has measured
    them) the NaNs stay.
    """
    inv = fill_inventory(read_table(paths.inventory), read_camera(paths))
    return require_camera(inv) if need_camera else inv


#: Masters kept by `load_masters` (a night's superbias, superdarks and superflats).
CACHE_SIZE = 8
_cache: OrderedDict = OrderedDict()


def _file_key(path):
    st = Path(path).stat()
    return (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns)


def _cached(kind, path, read):
    """``read(path)``, or the value kept from the last read of this unchanged file."""
    try:
        key = (kind, *_file_key(path))
    except OSError:          # missing: let ``read`` say so
        return read(path)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    value = read(path)
    _cache[key] = value
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return value


def clear_cache():
    """Forget the masters kept by `load_masters` (memory; files are re-checked anyway)."""
    _cache.clear()


def _read_master(path):
    """A master's (data, uncertainty, mask) as read-only float32/uint16 arrays."""
    c = read_product(path)
    arrays = (c.data, c.uncertainty, c.mask)
    for a in arrays:
        if a is not None:
            a.setflags(write=False)
    return arrays


def _read_flat(path):
    data, unc, mask = _read_master(path)
    bad = None
    if mask is not None:
        bad = has(mask, "LOWFLAT") | has(mask, "NODATA")
        bad.setflags(write=False)
    return data, unc, bad


def read_superdarks(paths) -> Table | None:
    """The superdarks made by 02 (None when the night had no darks)."""
    p = superdarks_table_path(paths)
    if not p.is_file():
        return None
    t = Table.read(p, format="ascii.ecsv")
    t["file"] = [str(p.parent / f) for f in t["file"]]
    return t


def masters_for(frame, paths, *, temp_tolerance=2.0):
    """Load the masters for one inventory row: superbias, matched superdark, superflat.

    Returns (`Masters`, notes) where notes says what was used or missing, and why.
    """
    notes = {}
    bias = superbias_path(paths)
    if not bias.is_file():
        bias = None
        notes["bias"] = "no superbias (01 found no bias frames)"
    table = superdarks_table_path(paths)
    darks = _cached("darks", table, lambda _: read_superdarks(paths)) if table.is_file() else None
    dark, notes["dark"] = match_dark(frame, darks,
                                     temp_tolerance=temp_tolerance)
    flat = superflat_path(paths, frame["filter"]) if frame["filter"] else None
    if flat is None or not flat.is_file():
        flat = None
        notes["flat"] = f"no superflat for filter '{frame['filter']}': not flat-fielded"
    return load_masters(bias=bias, dark=dark, flat=flat), notes


def temperature_groups(temps, tolerance):
    """Group temperatures that lie within ``tolerance`` of their group's first member.

    Returns an integer label per input (NaN temperatures form their own group).

    >>> temperature_groups([-20.1, -19.9, -10.0, -20.3], 2.0).tolist()
    [0, 0, 1, 0]
    """
    temps = np.asarray(temps, float)
    labels = np.full(temps.size, -1)
    centres = []
    for i in np.argsort(np.nan_to_num(temps, nan=np.inf), kind="stable"):
        t = temps[i]
        for j, c in enumerate(centres):
            if (np.isnan(t) and np.isnan(c)) or abs(t - c) <= tolerance:
                labels[i] = j
                break
        else:
            centres.append(t)
            labels[i] = len(centres) - 1
    # relabel in order of first appearance
    order = {lab: k for k, lab in enumerate(dict.fromkeys(labels.tolist()))}
    return np.array([order[lab] for lab in labels])


def match_dark(frame, darks: Table, *, temp_tolerance=2.0):
    """Choose the superdark for one frame (an inventory row).

    ``darks`` has columns ``file``, ``binning``, ``gain``, ``ccd_temp``. Returns
    (file or None, reason).
    """
    if darks is None or not len(darks):
        return None, "no darks in this night: dark current is not removed"
    cand = darks[darks["binning"] == frame["binning"]]
    if not len(cand):
        return None, f"no superdark with binning {frame['binning']}"
    g = frame["gain"]
    if np.isfinite(g):
        same = np.isclose(np.asarray(cand["gain"], float), g) | ~np.isfinite(cand["gain"])
        cand = cand[same]
        if not len(cand):
            return None, f"no superdark with gain {g}"
    t = frame["ccd_temp"]
    temps = np.asarray(cand["ccd_temp"], float)
    if not np.isfinite(t) or not np.isfinite(temps).any():
        return str(cand["file"][0]), "no CCD temperature to compare: first dark of same binning/gain"
    diff = np.abs(temps - t)
    best = int(np.nanargmin(diff))
    if diff[best] > temp_tolerance:
        return None, (f"nearest superdark is {diff[best]:.1f} deg C away "
                      f"(> {temp_tolerance}): dark current is not removed")
    return str(cand["file"][best]), f"binning and gain match, CCD temperature within {diff[best]:.1f} deg C"


def load_masters(*, bias=None, dark=None, flat=None) -> Masters:
    """Read the masters a frame is calibrated with (paths, each optional).

    A file read before in this process and unchanged since is not read again (see the
    module's description); the arrays are read-only.
    """
    m = Masters(names={})
    if bias is not None:
        m.bias, m.bias_unc, _ = _cached("master", bias, _read_master)
        m.names["bias"] = Path(bias).name
    if dark is not None:
        m.dark, m.dark_unc, _ = _cached("master", dark, _read_master)
        m.names["dark"] = Path(dark).name
    if flat is not None:
        m.flat, m.flat_unc, m.flat_mask = _cached("flat", flat, _read_flat)
        m.names["flat"] = Path(flat).name
    return m
