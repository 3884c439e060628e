"""Find, classify and describe every FITS frame of a night.

`build_inventory` walks a raw folder, reads each frame's header (and pixels, for
statistics), normalises what the headers say into one vocabulary
(`redux_helpers.headers`) and returns one table row per file. `find_problems` reads
that table and lists what would stop or spoil the reduction: a filter with lights but
no flats, mixed binning, saturated or under-exposed flats, frames that don't open.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from astropy.table import Table

from . import headers
from .errors import FrameError, ReduxError
from .fitsio import is_fits_name, read_frame

log = logging.getLogger(__name__)

COLUMNS = ("file", "frametype", "imagetyp", "object", "filter", "exptime", "binning",
           "naxis1", "naxis2", "gain", "read_noise", "ccd_temp", "airmass", "date_obs",
           "saturate", "biassec", "trimsec", "median", "robust_std", "min", "max",
           "sat_frac", "problem", "gain_key", "read_noise_key", "camera_problem")


def find_frames(raw_dir, *, exclude=()) -> list[Path]:
    """Every FITS file under ``raw_dir`` (recursively), sorted, minus ``exclude`` names."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        msg = f"raw folder {raw_dir} does not exist; fix raw_dir in the manifest"
        raise ReduxError(msg)
    skip = set(exclude)
    return sorted(p for p in raw_dir.rglob("*")
                  if p.is_file() and is_fits_name(p) and p.name not in skip
                  and str(p.relative_to(raw_dir)) not in skip)


def frame_overrides(settings: dict, name: str) -> dict:
    """Manifest keyword overrides for one file: '*' entries, then the file's own."""
    table = settings.get("header_overrides") or {}
    return {**(table.get("*") or {}), **(table.get(name) or {})}


def describe_frame(path, settings: dict | None = None, *, raw_dir=None) -> dict:
    """One inventory row: normalised header facts and pixel statistics of a frame."""
    settings = settings or {}
    path = Path(path)
    name = str(path.relative_to(raw_dir)) if raw_dir else path.name
    data, header = read_frame(path, frame_overrides(settings, path.name))
    row = headers.normalised(header, settings, filename=path.name)
    row.update(file=name, naxis1=int(data.shape[1]), naxis2=int(data.shape[0]), problem="",
               filter=row["filter"] or "")
    sec = headers.sections(header)
    img = data[sec[1]] if sec else data
    sample = img[::2, ::2] if img.size > 4e6 else img
    med = float(np.median(sample))
    row.update(median=med,
               robust_std=float(1.4826 * np.median(np.abs(sample - med))),
               min=float(img.min()), max=float(img.max()),
               sat_frac=float(np.mean(img >= row["saturate"])))
    return row


def build_inventory(raw_dir, settings: dict | None = None, *, progress=None) -> Table:
    """The inventory of a raw folder: one row per FITS file (see `COLUMNS`).

    Frames that can't be read still get a row, with frametype ``unreadable`` and the
    reason in ``problem``; `check_readable` turns those into one clear error.
    """
    settings = settings or {}
    rows = []
    paths = find_frames(raw_dir, exclude=settings.get("exclude") or ())
    if not paths:
        msg = (f"no FITS files (.fits, .fit, .fts, .fits.gz) found under {raw_dir}; "
               "check raw_dir in the manifest")
        raise ReduxError(msg)
    for p in paths:
        try:
            rows.append(describe_frame(p, settings, raw_dir=raw_dir))
        except FrameError as exc:
            rows.append({"file": str(p.relative_to(raw_dir)), "frametype": "unreadable",
                         "problem": str(exc)})
        if progress:
            progress(1)
    table = Table(rows=[[r.get(c, _blank(c)) for c in COLUMNS] for r in rows],
                  names=COLUMNS, dtype=[_dtype(c) for c in COLUMNS])
    for col, unit in (("exptime", "s"), ("ccd_temp", "deg_C"), ("gain", "electron/adu"),
                      ("read_noise", "electron")):
        table[col].unit = unit
    table.meta["raw_dir"] = str(raw_dir)
    return table


def _blank(col):
    return "" if _dtype(col) is str else np.nan


def _dtype(col):
    return str if col in ("file", "frametype", "imagetyp", "object", "filter", "binning",
                          "date_obs", "biassec", "trimsec", "problem", "gain_key",
                          "read_noise_key", "camera_problem") else float


def select(table, frametype, *, filter=None, binning=None) -> Table:
    """Rows of one frame type (and filter, binning)."""
    keep = table["frametype"] == frametype
    if filter is not None:
        keep &= table["filter"] == filter
    if binning is not None:
        keep &= table["binning"] == binning
    return table[keep]


def check_readable(table):
    """Raise one `FrameError` listing every frame that could not be read."""
    bad = table[table["frametype"] == "unreadable"]
    if len(bad):
        lines = "\n".join(f"  - {r['problem']}" for r in bad)
        msg = f"{len(bad)} file(s) in the raw folder can't be used:\n{lines}"
        raise FrameError(msg)


def find_problems(table, *, flat_low_adu=1000.0, flat_sat_frac=0.001) -> Table:
    """What in a night's inventory would stop or spoil the reduction.

    Returns a table of (severity, file, problem, what_to_do); severity is ``error``
    (the chain can't go on) or ``warning`` (it goes on, but look).
    """
    out = []

    def add(sev, f, what, todo):
        out.append((sev, f, what, todo))

    for r in table[table["frametype"] == "unreadable"]:
        add("error", r["file"], r["problem"], "exclude it in the manifest")
    ok = table[table["frametype"] != "unreadable"]
    for r in ok:
        if r["frametype"] in ("light", "standard", "dark", "flat") and np.isnan(r["exptime"]):
            add("error", r["file"], "no exposure time keyword (EXPTIME/EXPOSURE/ITIME)",
                "add it under header_overrides for this file in the manifest")
        if r["frametype"] in ("light", "standard", "flat") and not r["filter"]:
            add("warning", r["file"], "no filter found in the header",
                "set filter_keyword, filter_codes or filter_from_object in the manifest")
    for kind in ("bias", "dark", "flat", "light", "standard"):
        sub = ok[ok["frametype"] == kind]
        bins = sorted(set(sub["binning"]))
        if len(bins) > 1:
            counts = ", ".join(f"{b} ({int(np.sum(sub['binning'] == b))})" for b in bins)
            add("warning", "", f"{kind} frames have mixed binning: {counts}",
                "each step uses the frames whose binning matches the lights")
    lights = ok[np.isin(ok["frametype"], ["light", "standard"])]
    flats = ok[ok["frametype"] == "flat"]
    for filt in sorted(set(lights["filter"]) - {""}):
        if filt not in set(flats["filter"]):
            add("warning", "", f"filter {filt} has lights but no flats",
                "its lights will be calibrated without a flat; add flats or a superflat")
    for r in flats:
        level = r["median"] - _bias_estimate(ok)
        if r["sat_frac"] > flat_sat_frac:
            add("warning", r["file"], f"flat is saturated in {100 * r['sat_frac']:.2f}% of pixels",
                "exclude it: a saturated flat has no information where it clips")
        elif level < flat_low_adu:
            add("warning", r["file"], f"flat is under-exposed ({level:.0f} ADU above bias)",
                "exclude it or accept a noisier superflat")
    if not len(ok[ok["frametype"] == "bias"]):
        add("warning", "", "no bias frames",
            "with an overscan the level is still removed; without, add bias frames")
    return Table(rows=out or None, names=("severity", "file", "problem", "what_to_do"),
                 dtype=(str, str, str, str))


def _bias_estimate(table):
    """Typical raw level of a bias frame (what a flat's level sits on), 0 if none."""
    biases = table[table["frametype"] == "bias"]
    return float(np.median(biases["median"])) if len(biases) else 0.0


def light_binning(table) -> str:
    """The binning of most lights (what calibration frames must match)."""
    lights = table[np.isin(table["frametype"], ["light", "standard"])]
    if not len(lights):
        return "1x1"
    values, counts = np.unique(np.asarray(lights["binning"]), return_counts=True)
    return str(values[np.argmax(counts)])


def safe_name(text: str) -> str:
    """A file-name-safe version of a filter or object name."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(text)).strip("_") or "none"
