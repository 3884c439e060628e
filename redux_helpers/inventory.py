"""Find, classify and describe every FITS frame of a night.

`build_inventory` walks a raw folder, reads each frame's header (and pixels, for
statistics), normalises what the headers say into one vocabulary
(`redux_helpers.headers`) and returns one table row per file. `find_problems` reads
that table and lists what would stop or spoil the reduction: a filter with lights but
no flats, mixed binning, saturated or under-exposed flats, frames that don't open.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
from astropy.table import Table

from . import headers, parallel
from .errors import FrameError, ReduxError
from .fitsio import frame_stem, is_fits_name, read_frame
from .products import check_not_products  # noqa: F401 - build_inventory's first check

log = logging.getLogger(__name__)

COLUMNS = ("file", "frametype", "imagetyp", "object", "filter", "exptime", "binning",
           "naxis1", "naxis2", "gain", "read_noise", "ccd_temp", "airmass", "date_obs",
           "saturate", "biassec", "trimsec", "median", "robust_std", "min", "max",
           "sat_frac", "nan_frac", "filter_hint", "problem", "gain_key", "read_noise_key", "camera_problem")
#: The inventory's physical columns and their units: frame statistics are of the raw
#: values as stored (ADU); airmass and the fractions are pure numbers.
UNITS = {"exptime": "s", "naxis1": "pix", "naxis2": "pix", "gain": "electron/adu",
         "read_noise": "electron", "ccd_temp": "deg_C", "saturate": "adu", "median": "adu",
         "robust_std": "adu", "min": "adu", "max": "adu"}


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
    """Manifest keyword overrides for one file: '*' entries, then its name's, then its path's.

    ``name`` is the file's path below the raw folder; an entry may name the file by that
    path (``night2/a.fits``) or by its bare name (``a.fits``, then it applies in every
    subfolder).
    """
    table = settings.get("header_overrides") or {}
    return {**(table.get("*") or {}), **(table.get(Path(name).name) or {}),
            **(table.get(str(name)) or {})}


#: Header keywords that may hold a filter under a name redux does not read by default.
_FILTERISH = re.compile(r"FILT|WHEEL|BAND|WAVE|^WL|INSFLNAM|ELEMENT")
#: Filter names looked for as words of OBJECT (a hint to offer, never a guess used).
_FILTER_WORDS = ("U", "B", "V", "R", "I", "u", "g", "r", "i", "z", "Y", "J", "H", "K",
                 "Ha", "Halpha", "OIII", "SII", "Hb", "L", "Lum", "Red", "Green", "Blue",
                 "Clear")


def filter_hint(header) -> str:
    """The header cards that might say a frame's filter, as JSON (for `find_problems`)."""
    cards = {k: str(v).strip() for k, v in header.items()
             if k and _FILTERISH.search(k) and str(v).strip()}
    if str(header.get("OBJECT", "")).strip():
        cards["OBJECT"] = str(header["OBJECT"]).strip()
    return json.dumps(cards, sort_keys=True)


def describe_frame(path, settings: dict | None = None, *, raw_dir=None) -> dict:
    """One inventory row: normalised header facts and pixel statistics of a frame.

    The file is read whole, once (``read_frame(whole=True)``): a damaged compressed
    file is found here, not as garbage pixels three steps later.
    """
    settings = settings or {}
    path = Path(path)
    name = str(path.relative_to(raw_dir)) if raw_dir else path.name
    data, header = read_frame(path, frame_overrides(settings, name), whole=True)
    if "REDXSTEP" in header:
        msg = (f"{path} is a product of redux ({header['REDXSTEP']}), not a raw frame: raw_dir "
               "must name the telescope's own files; fix raw_dir, or exclude it")
        raise FrameError(msg)
    forced = settings.get("frame_types") or {}
    row = headers.normalised(header, settings, filename=name if name in forced else path.name)
    row.update(file=name, naxis1=int(data.shape[1]), naxis2=int(data.shape[0]), problem="",
               filter=row["filter"] or "",
               filter_hint="" if row["filter"] else filter_hint(header))
    sec = headers.sections(header)
    img = data[sec[1]] if sec else data
    finite = np.isfinite(img)
    nan_frac = float(1.0 - finite.mean())
    if nan_frac:
        img = img[finite] if finite.any() else np.zeros(1, np.float32)
    sample = img[::2, ::2] if img.ndim == 2 and img.size > 4e6 else img
    med = float(np.median(sample))
    row.update(median=med,
               robust_std=float(1.4826 * np.median(np.abs(sample - med))),
               min=float(img.min()), max=float(img.max()),
               sat_frac=float(np.mean(img >= row["saturate"])), nan_frac=nan_frac)
    return row


def build_inventory(raw_dir, settings: dict | None = None, *, progress=None,
                    workers=0) -> Table:
    """The inventory of a raw folder: one row per FITS file (see `COLUMNS`).

    The files are read by ``workers`` threads at once (`parallel.each`; 0: one per core).

    Frames that can't be read still get a row, with frametype ``unreadable`` and the
    reason in ``problem``; `check_readable` turns those into one clear error.
    """
    settings = settings or {}
    check_not_products(raw_dir)
    paths = find_frames(raw_dir, exclude=settings.get("exclude") or ())
    if not paths:
        msg = (f"no FITS files (.fits, .fit, .fts, .fits.gz) found under {raw_dir}; "
               "check raw_dir in the manifest")
        raise ReduxError(msg)
    def row_of(p):
        try:
            return describe_frame(p, settings, raw_dir=raw_dir)
        except FrameError as exc:
            return {"file": str(p.relative_to(raw_dir)), "frametype": "unreadable",
                    "problem": str(exc)}

    rows = parallel.each(row_of, paths, workers=workers, progress=progress)  # files in threads
    table = Table(rows=[[r.get(c, _blank(c)) for c in COLUMNS] for r in rows],
                  names=COLUMNS, dtype=[_dtype(c) for c in COLUMNS])
    for col, unit in UNITS.items():
        table[col].unit = unit
    table.meta["raw_dir"] = str(raw_dir)
    return table


def _blank(col):
    return "" if _dtype(col) is str else np.nan


def _dtype(col):
    return str if col in ("file", "frametype", "imagetyp", "object", "filter", "binning",
                          "date_obs", "biassec", "trimsec", "filter_hint", "problem", "gain_key",
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


#: A raw frame with more NaN pixels than this share is refused (a broken read-out).
NAN_FRAC_MAX = 0.01
#: A light or standard saturated over more than this share of its pixels is refused.
LIGHT_SAT_MAX = 0.5


def find_problems(table, *, flat_low_adu=1000.0, flat_sat_frac=0.001,
                  place="in the manifest") -> Table:
    """What in a night's inventory would stop or spoil the reduction.

    Returns a table of (severity, file, problem, what_to_do); severity is ``error``
    (the chain can't go on) or ``warning`` (it goes on, but look). ``place`` says where
    a manifest line goes (`manifest.Target.place`: ``under `m13:` in night.yaml``).
    """
    out = []

    def add(sev, f, what, todo):
        out.append((sev, f, what, todo))

    for r in table[table["frametype"] == "unreadable"]:
        add("error", r["file"], r["problem"], f"exclude it {place}")
    ok = table[table["frametype"] != "unreadable"]
    _frame_problems(ok, add, place)
    _set_problems(table, ok, add, place)
    _flat_problems(ok, add, flat_low_adu=flat_low_adu, flat_sat_frac=flat_sat_frac)
    lights = ok[np.isin(ok["frametype"], ["light", "standard"])]
    if not len(lights):
        add("error", "", f"no light frames among the {len(ok)} readable frames: nothing to "
            "reduce", "add the lights to raw_dir, or give their type under frame_types:, "
            f"{place}")
    if not len(ok[ok["frametype"] == "bias"]):
        add("warning", "", "no bias frames",
            "with an overscan the level is still removed; without, add bias frames")
    return Table(rows=out or None, names=("severity", "file", "problem", "what_to_do"),
                 dtype=(str, str, str, str))


def _frame_problems(ok, add, place):
    """Each readable frame on its own: NaN, saturated, no exposure time, an odd IMAGETYP."""
    for r in ok:
        if r["nan_frac"] > NAN_FRAC_MAX:
            add("error", r["file"], f"{100 * r['nan_frac']:.1f} % of its pixels are NaN (no "
                "value)", f"exclude it {place}: a raw frame has a value in every pixel")
        if r["frametype"] in ("light", "standard") and r["sat_frac"] > LIGHT_SAT_MAX:
            add("error", r["file"], f"{100 * r['sat_frac']:.0f} % of its pixels are saturated "
                f"(at or above {r['saturate']:g} ADU): nothing in it can be measured",
                f"exclude it {place} (or set saturate: if the level is wrong)")
        if r["frametype"] in ("light", "standard", "dark", "flat") and np.isnan(r["exptime"]):
            add("error", r["file"], "no exposure time keyword (EXPTIME/EXPOSURE/ITIME)",
                f"add it to header_overrides for this file, {place}")
    for r in ok:
        if r["imagetyp"].strip() and headers.type_from_words(r["imagetyp"]) is None:
            add("warning", r["file"], f"IMAGETYP '{r['imagetyp'].strip()}' is not a frame type "
                f"redux knows: it is read as {r['frametype']}",
                f"if it is not a {r['frametype']}, set frame_types: {{{r['file']}: <type>}} or "
                f"exclude it {place}")
        if r["frametype"] == "flat" and r["min"] <= 0:
            add("warning", r["file"], f"flat has pixels at or below 0 ADU (min {r['min']:g}): "
                "a dead or masked region the superflat can't correct",
                "exclude it, or list the region under bad_columns/bad_rows")


def _set_problems(table, ok, add, place):
    """The frames together (``ok`` the readable of ``table``): unknown filters, one product
    name twice, copies, mixed sizes and binnings."""
    unknown = ok[np.isin(ok["frametype"], ["light", "standard", "flat"]) & (ok["filter"] == "")]
    if len(unknown):
        add("error", ", ".join(unknown["file"]), unknown_filter_problem(unknown),
            unknown_filter_fix(unknown, place=place))
    for stem, files in duplicate_stems(table["file"]).items():
        add("error", ", ".join(files), f"{len(files)} files would make products of one name "
            f"('{stem}'): one would overwrite the other",
            f"rename one of them, or list all but one under 'exclude:', {place}")
    for files in same_frames(ok):
        add("warning", ", ".join(files), "these files look like copies of one frame (same "
            "DATE-OBS, size and pixel statistics); each would count as a frame of its own",
            f"list all but one under 'exclude:', {place}")
    for what, files in mixed_sizes(ok):
        add("error", files, what, f"list the frames of the other size under 'exclude:', {place}, "
            "or make them a target of their own (one raw_dir per camera set-up)")
    for kind in ("bias", "dark", "flat", "light", "standard"):
        sub = ok[ok["frametype"] == kind]
        bins = sorted(set(sub["binning"]))
        if len(bins) > 1:
            counts = ", ".join(f"{b} ({int(np.sum(sub['binning'] == b))})" for b in bins)
            add("warning", "", f"{kind} frames have mixed binning: {counts}",
                "each step uses the frames whose binning matches the lights")


def _flat_problems(ok, add, *, flat_low_adu, flat_sat_frac):
    """Filters with lights but no flats; flats saturated or under-exposed."""
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


def _size(r) -> str:
    return f"{int(r['naxis1'])}x{int(r['naxis2'])}"


def mixed_sizes(table) -> list[tuple[str, str]]:
    """(problem, files) for frames that can't be combined or calibrated for their size.

    Lights (and standards, flats) of one filter must share one raw size, and biases,
    darks and each filter's flats must have the size of the lights they calibrate;
    among the frames of the lights' binning (the others are left out, with a warning).
    """
    out = []

    def sizes_of(rows):
        by: dict[str, list[str]] = {}
        for r in rows:
            by.setdefault(_size(r), []).append(str(r["file"]))
        return by

    def listed(by):
        return "; ".join(f"{size} ({len(f)}: {', '.join(f[:3])}{' ...' if len(f) > 3 else ''})"
                         for size, f in sorted(by.items(), key=lambda kv: -len(kv[1])))

    # frames of another binning than the lights' are left out by every step (and 00 warns)
    table = table[table["binning"] == light_binning(table)] if "binning" in table.colnames \
        else table
    science = table[np.isin(table["frametype"], ["light", "standard"])]
    for filt in sorted(set(table["filter"][np.isin(table["frametype"],
                                                   ["light", "standard", "flat"])]) - {""}):
        for kind in ("light", "flat"):
            kinds = ["light", "standard"] if kind == "light" else ["flat"]
            rows = table[np.isin(table["frametype"], kinds) & (table["filter"] == filt)]
            by = sizes_of(rows)
            if len(by) > 1:
                out.append((f"{kind}s of filter {filt} come in {len(by)} raw sizes: {listed(by)}; "
                            "a master or a stack holds frames of one size",
                            ", ".join(f for files in by.values() for f in files)))
    lights = sizes_of(science)
    if len(lights) != 1:
        return out
    size = next(iter(lights))
    for kind in ("bias", "dark", "flat"):
        rows = table[table["frametype"] == kind]
        other = {k: v for k, v in sizes_of(rows).items() if k != size}
        if other:
            out.append((f"{sum(len(v) for v in other.values())} {kind} frame(s) are not the "
                        f"lights' size {size}: {listed(other)}; they can't calibrate them",
                        ", ".join(f for files in other.values() for f in files)))
    return out


def duplicate_stems(files) -> dict[str, list[str]]:
    """Product names (`fitsio.frame_stem`) that two or more raw files would share."""
    by_stem: dict[str, list[str]] = {}
    for f in files:
        by_stem.setdefault(frame_stem(str(f)), []).append(str(f))
    return {k: v for k, v in by_stem.items() if len(v) > 1}


def same_frames(table) -> list[list[str]]:
    """Groups of rows that look like one frame stored twice (e.g. in two subfolders)."""
    keys: dict[tuple, list[str]] = {}
    for r in table:
        if not str(r["date_obs"]):
            continue
        key = (str(r["date_obs"]), int(r["naxis1"]), int(r["naxis2"]), float(r["median"]),
               float(r["robust_std"]), float(r["min"]), float(r["max"]))
        keys.setdefault(key, []).append(str(r["file"]))
    return [v for v in keys.values() if len(v) > 1]


def _hints(rows) -> dict[str, list[str]]:
    """Keyword -> the distinct values it has over ``rows`` (from their ``filter_hint``)."""
    values: dict[str, set] = {}
    for r in rows:
        for k, v in json.loads(r["filter_hint"] or "{}").items():
            values.setdefault(k, set()).add(v)
    return {k: sorted(v) for k, v in sorted(values.items())}


def unknown_filter_problem(rows) -> str:
    """What 00 says of frames whose filter it can't tell (see `unknown_filter_fix`)."""
    kinds = ", ".join(f"{int(np.sum(rows['frametype'] == k))} {k}"
                      for k in ("flat", "light", "standard") if np.any(rows["frametype"] == k))
    hints = _hints(rows)
    keys = [k for k in hints if k != "OBJECT"]
    said = "; ".join(f"{k} = " + ", ".join(repr(v) for v in hints[k][:6])
                     + (" ..." if len(hints[k]) > 6 else "") for k in keys)
    if len(hints.get("OBJECT", [])) > 1:
        said += ("; " if said else "") + f"OBJECT varies ({len(hints['OBJECT'])} values)"
    return (f"{len(rows)} frames ({kinds}) have no filter redux can read, and frames of "
            "unknown filter are never combined (they could mix filters); "
            + (f"header keywords that may say it: {said}" if said else
               "no header keyword names a filter"))


def unknown_filter_fix(rows, *, place="under the target in the manifest") -> str:
    """The manifest lines that give frames of unknown filter their filter."""
    hints = _hints(rows)
    keys = [k for k in hints if k != "OBJECT"]
    ways = []
    if keys:
        # the keyword whose values split the frames best comes first
        k = max(keys, key=lambda key: (len(hints[key]), key == "FILTERS"))
        codes = ", ".join(f'"{v}": <name>' for v in hints[k][:8])
        ways.append(f"filter_keyword: {k}  and  filter_codes: {{{codes}}}  (the filter each "
                    "value stands for; without codes the values are used as names)")
    words = _object_filter_words(rows)
    if words:
        ways.append(f"filter_from_object: [{', '.join(words)}]  (OBJECT says the filter)")
    ways.append('header_overrides: {"*": {FILTER: <name>}}  when every frame has one '
                "filter, or per file: header_overrides: {file.fits: {FILTER: <name>}}")
    return f"add {place} one of: " + "  |  ".join(ways)


def _object_filter_words(rows) -> list[str]:
    """Filter names found as a word in the OBJECT of every row, or [] if some row has none."""
    found = set()
    for r in rows:
        words = set(headers.object_words(r["object"]))   # as filter_from_object reads it
        hit = [w for w in _FILTER_WORDS if w in words]
        if len(hit) != 1:
            return []
        found.add(hit[0])
    return sorted(found)


def problem_notes(root) -> list[str]:
    """`problem_summary` of the problems table 00 wrote under the target's products
    folder ``root``; none when there is no table."""
    from .fitsio import read_table
    from .products import path

    table = path(lambda step: Path(root) / step, "problems")
    return problem_summary(read_table(table)) if table.is_file() else []


def problem_summary(problems, *, limit=6) -> list[str]:
    """A few lines for the terminal: counts by severity, then the first problems."""
    if not len(problems):
        return ["no problems found"]
    n_err = int(np.sum(problems["severity"] == "error"))
    lines = [f"{n_err} error(s), {len(problems) - n_err} warning(s) "
             "(all in 00_inspect/problems.ecsv):"]
    order = sorted(range(len(problems)), key=lambda i: problems["severity"][i] != "error")
    for i in order[:limit]:
        r = problems[i]
        where = f"{r['file']}: " if r["file"] and len(str(r["file"])) < 60 else ""
        lines.append(f"  {r['severity']}: {where}{r['problem']}")
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return lines
