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
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from astropy.table import Table

from .calibrate import Masters
from .fitsio import read_product, read_table
from .gain import fill_inventory, require_camera
from .masks import has

log = logging.getLogger(__name__)


def superdark_path(paths, temp) -> Path:
    """``02_superflat/superdark_<temp>C.fits`` (``superdark.fits`` with no temperature)."""
    if temp is None or not np.isfinite(temp):
        return paths.product("superdark_any")
    return paths.product("superdark", temp=temp)


def read_camera(paths) -> Table | None:
    """02's camera table (`gain.camera_table`), or None before 02 has run."""
    p = paths.product("camera")
    return Table.read(p, format="ascii.ecsv") if p.is_file() else None


def read_inventory(paths, *, need_camera=True, place=None) -> Table:
    """00's inventory with the gain and read noise 02 measured where the headers had none.

    Every notebook after 02 reads the inventory through this, so none sees a NaN gain.
    With ``need_camera`` a frame still without a gain or read noise is a `ReduxError`
    naming the manifest lines to add; without it (notebook 01, before 02 has measured
    them) the NaNs stay.
    """
    inv = fill_inventory(read_table(paths.inventory), read_camera(paths))
    return require_camera(inv, place=place) if need_camera else inv


#: Masters kept by `load_masters` (a night's superbias, superdarks and superflats).
CACHE_SIZE = 8
_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def _file_key(path):
    st = Path(path).stat()
    return (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns)


def _cached(kind, path, read):
    """``read(path)``, or the value kept from the last read of this unchanged file."""
    try:
        key = (kind, *_file_key(path))
    except OSError:          # missing: let ``read`` say so
        return read(path)
    with _cache_lock:        # frames calibrated in threads (`parallel.each`) share it
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        value = read(path)   # under the lock: a master wanted by two threads is read once
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
    p = paths.product("superdarks")
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
    bias = paths.product("superbias")
    if not bias.is_file():
        bias = None
        notes["bias"] = "no superbias (01 found no bias frames)"
    table = paths.product("superdarks")
    darks = _cached("darks", table, lambda _: read_superdarks(paths)) if table.is_file() else None
    dark, notes["dark"] = match_dark(frame, darks,
                                     temp_tolerance=temp_tolerance)
    flat = paths.product("superflat", filter=frame["filter"]) if frame["filter"] else None
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


def scaled_flat_readers(flats, *, raw_dir, settings, bias, dark_table, temp_tolerance=2.0,
                        dark_cache=None):
    """Readers of one filter's flats, bias and dark removed, each divided by its central level.

    Every flat is read in electrons with the superbias and its matched superdark
    (`match_dark`) subtracted, and scaled by its own central level (`central_level`), so
    that all flats of a filter are near 1 in the centre before they are combined.

    Parameters
    ----------
    flats : `~astropy.table.Table`
        Inventory rows of the flats of one filter (``file``, ``gain``, ``read_noise``, ...).
    raw_dir : path-like
        Where the raw files are.
    settings : dict
        The target's settings (`redux_helpers.inventory.frame_overrides` reads them).
    bias : array or None
        The superbias (ADU).
    dark_table : `~astropy.table.Table` or None
        02's superdark table (`read_superdarks`).
    dark_cache : dict, optional
        Superdark file -> e-/s image, filled as darks are read (one read per night).

    Returns
    -------
    readers : list of `~redux_helpers.calibrate.FrameReader`
        Open readers with ``scale`` set; the caller closes them.
    levels : list of float
        Each flat's central level (e-).
    dark_file : str or None
        The superdark of the last flat (for the product's provenance).

    Raises
    ------
    ReduxError
        A flat whose centre is not above 10 times its read noise saw (almost) no light:
        the message names it and says to exclude it.
    """
    from .calibrate import FrameReader
    from .combine import central_level
    from .errors import ReduxError
    from .inventory import frame_overrides

    dark_cache = {} if dark_cache is None else dark_cache
    readers, levels, dfile = [], [], None
    try:
        for r in flats:
            dfile, _ = match_dark(r, dark_table, temp_tolerance=temp_tolerance)
            if dfile and dfile not in dark_cache:
                dark_cache[dfile] = read_product(dfile).data
            reader = FrameReader(Path(raw_dir) / r["file"],
                                 overrides=frame_overrides(settings, r["file"]),
                                 bias=bias, gain=r["gain"], dark=dark_cache.get(dfile))
            readers.append(reader)
            level = central_level(reader)
            if not level > 10 * np.nan_to_num(r["read_noise"]):
                msg = (f"{r['file']}: the centre of this {r['filter']} flat is at {level:.1f} e- "
                       f"after bias and dark subtraction, not clearly above zero (10 x the read "
                       f"noise is {10 * r['read_noise']:g} e-): it saw (almost) no light. Add it "
                       "to 'exclude:' in the manifest and run 00_inspect again")
                raise ReduxError(msg)
            reader.scale = level
            levels.append(level)
    except Exception:
        for reader in readers:
            reader.close()
        raise
    return readers, levels, dfile


def one_bias_uncertainty(bias, read_noise_adu=None):
    """The uncertainty of a superbias made of a single bias frame: its read noise (ADU).

    As for one flat (`one_flat_uncertainty`), one frame has no scatter to measure a
    standard error from. A bias pixel's error is the read noise: the header's
    (``read_noise_adu``, e-/gain) when known, else the frame's robust scatter (which
    also holds its fixed pattern, so it errs high, never low).

    >>> float(one_bias_uncertainty(np.zeros((3, 3)), 4.5)[1, 1])
    4.5
    """
    from astropy.stats import mad_std

    bias = np.asarray(bias, np.float64)
    rn = float(read_noise_adu) if read_noise_adu is not None and np.isfinite(read_noise_adu) \
        else float(mad_std(bias, ignore_nan=True))
    return np.full(bias.shape, rn, np.float32)


def one_flat_uncertainty(flat, level, read_noise):
    """The uncertainty of a superflat made of a single flat: its photon and read noise.

    With one frame there is no scatter to measure the combine's standard error from
    (`redux_helpers.combine.combine_readers` leaves it NaN). A pixel of the normalised
    flat ``f`` held ``f * level`` electrons, so its one-sigma error is
    ``sqrt(f * level + read_noise**2) / level``.

    >>> round(float(one_flat_uncertainty(np.array([1.0]), 10000.0, 0.0)[0]), 6)
    0.01
    """
    f = np.clip(np.asarray(flat, np.float64), 0, None)
    return (np.sqrt(f * level + float(np.nan_to_num(read_noise)) ** 2) / level).astype(np.float32)
