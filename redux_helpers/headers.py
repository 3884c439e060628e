"""Header normalisation: one vocabulary for what real cameras write many ways.

Cameras disagree on names (``EXPTIME``/``EXPOSURE``/``ITIME``), on frame types
(``BIAS``, ``zero``, ``Bias Frame``), on where the filter is (``FILTER``, ``FILT``,
``FILTER1``, a numeric code, only in ``OBJECT``) and on binning (``XBINNING`` or
``CCDSUM``). These functions read a header and answer in one vocabulary; what a
header can't say comes from the target's manifest settings.

>>> from astropy.io import fits
>>> frame_type(fits.Header({"IMAGETYP": "Bias Frame"}))
'bias'
>>> frame_type(fits.Header({"IMAGETYP": "DOME FLAT"}))
'flat'
"""

from __future__ import annotations

import re

import numpy as np
from astropy.io import fits

from .errors import FrameError

FRAME_TYPES = ("bias", "dark", "flat", "light", "standard")

_TYPE_WORDS = [
    ("bias", ("bias", "zero")),
    ("dark", ("dark",)),
    ("flat", ("flat", "skyflat", "domeflat", "twiflat")),
    ("light", ("light", "object", "science", "sci", "target")),
]
DEFAULT_STANDARD_PATTERN = r"(?i)(\bstd\b|standard|landolt|\bsa ?\d+|\bpg ?\d{4})"

EXPTIME_KEYS = ("EXPTIME", "EXPOSURE", "ITIME", "EXPTIM")
FILTER_KEYS = ("FILTER", "FILT", "FILTER1", "FILTNAME", "FILTER2")
GAIN_KEYS = ("GAIN", "EGAIN", "CCDGAIN")
RDNOISE_KEYS = ("RDNOISE", "READNOIS", "RON", "READNOISE")
TEMP_KEYS = ("CCD-TEMP", "CCDTEMP", "DETTEMP", "TEMP")
AIRMASS_KEYS = ("AIRMASS", "SECZ")


def first(header, keys, default=None):
    """The value of the first of ``keys`` present (and not blank) in ``header``."""
    for k in keys:
        v = header.get(k)
        if v is not None and str(v).strip() != "":
            return v
    return default


def _words(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", str(text).lower()).strip()


def frame_type(header, *, settings: dict | None = None, filename: str | None = None) -> str:
    """Classify a frame as bias, dark, flat, light or standard.

    Order: a manifest ``frame_types`` entry for the file; ``IMAGETYP`` (or ``OBSTYPE``,
    ``FRAME``); words in ``OBJECT``; else light. A light whose ``OBJECT`` matches the
    target's ``standard_pattern`` is a standard.
    """
    settings = settings or {}
    forced = (settings.get("frame_types") or {}).get(filename) if filename else None
    if forced:
        if forced not in FRAME_TYPES:
            msg = (f"frame_types: '{filename}' is given type '{forced}'; "
                   f"use one of {', '.join(FRAME_TYPES)}")
            raise FrameError(msg)
        return forced
    raw = first(header, ("IMAGETYP", "OBSTYPE", "FRAME", "CCDTYPE"), "")
    kind = None
    words = _words(raw).replace("dome flat", "domeflat").replace("sky flat", "skyflat")
    for name, keys in _TYPE_WORDS:
        if any(w in keys or w.endswith("flat") and name == "flat" for w in words.split()):
            kind = name
            break
    obj = str(header.get("OBJECT", ""))
    if kind is None:
        ow = _words(obj).split()
        for name, keys in _TYPE_WORDS[:3]:
            if any(w in keys for w in ow):
                kind = name
                break
    kind = kind or "light"
    if kind == "light":
        pattern = settings.get("standard_pattern", DEFAULT_STANDARD_PATTERN)
        if re.search(pattern, obj):
            kind = "standard"
    return kind


def exptime(header):
    """Exposure time in seconds, or None when no keyword gives it."""
    v = first(header, EXPTIME_KEYS)
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def filter_name(header, *, settings: dict | None = None) -> str | None:
    """The filter of a frame, or None when nothing says.

    Order: the manifest's ``filter_keyword`` (through ``filter_codes`` if given); the
    usual keywords (through ``filter_codes``); the manifest's ``filter_from_object``
    names found as words in ``OBJECT``.
    """
    settings = settings or {}
    codes = {str(k).strip(): str(v) for k, v in (settings.get("filter_codes") or {}).items()}
    keys = (settings["filter_keyword"],) if settings.get("filter_keyword") else \
        FILTER_KEYS + (("FILTERS",) if codes else ())
    value = first(header, keys)
    if value is not None:
        text = str(value).strip()
        return codes.get(text, text)
    obj_words = str(header.get("OBJECT", "")).replace("-", " ").split()
    for name in settings.get("filter_from_object") or ():
        if name in obj_words:
            return name
    return None


def binning(header) -> str:
    """Binning as 'XxY' (e.g. '1x1'), from XBINNING/YBINNING, CCDSUM or BINNING."""
    if "XBINNING" in header:
        return f"{int(header['XBINNING'])}x{int(header.get('YBINNING', header['XBINNING']))}"
    if "CCDSUM" in header:
        parts = str(header["CCDSUM"]).split()
        if len(parts) == 2:
            return f"{int(parts[0])}x{int(parts[1])}"
    if "BINNING" in header:
        return str(header["BINNING"]).lower().replace(" ", "")
    return "1x1"


def number(header, keys, settings: dict | None = None, setting: str | None = None):
    """A number from the first of ``keys``, else the manifest ``setting``, else None."""
    v = first(header, keys)
    if v is None and settings and setting:
        v = settings.get(setting)
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def gain(header, settings=None):
    """e-/ADU: GAIN/EGAIN keyword, else the manifest's ``gain``."""
    return number(header, GAIN_KEYS, settings, "gain")


def read_noise(header, settings=None):
    """Read noise in e-: RDNOISE/READNOIS keyword, else the manifest's ``read_noise``."""
    return number(header, RDNOISE_KEYS, settings, "read_noise")


def saturation(header, settings=None) -> float:
    """Raw ADU at which a pixel is saturated.

    ``SATURATE`` keyword, else the manifest's ``saturate``, else the top of the raw
    integer range (65535 for ``BITPIX=16`` with ``BZERO=32768``, 32767 without), else
    infinity for floating-point data.
    """
    v = number(header, ("SATURATE", "SATLEVEL"), settings, "saturate")
    if v is not None:
        return v
    bitpix = int(header.get("BITPIX", -32))
    if bitpix > 0:
        top = 2 ** (bitpix - 1) - 1
        return float(top * header.get("BSCALE", 1) + header.get("BZERO", 0))
    return float(np.inf)


def parse_section(text, *, key="section"):
    """FITS section '[x1:x2,y1:y2]' (1-based, inclusive) -> numpy (rows, cols) slices.

    >>> parse_section("[  17: 528,   1: 520]")
    (slice(0, 520, None), slice(16, 528, None))
    """
    m = re.fullmatch(r"\s*\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]\s*", str(text))
    if not m:
        msg = f"{key} '{text}' is not a FITS section like '[1:1024,1:1024]'"
        raise FrameError(msg)
    x1, x2, y1, y2 = (int(g) for g in m.groups())
    if x2 < x1 or y2 < y1:
        msg = f"{key} '{text}' runs backwards; redux reads sections low:high"
        raise FrameError(msg)
    return slice(y1 - 1, y2), slice(x1 - 1, x2)


def sections(header) -> tuple | None:
    """(biassec, trimsec) slices when the camera has an overscan, else None."""
    if "BIASSEC" not in header:
        return None
    bias = parse_section(header["BIASSEC"], key="BIASSEC")
    trim_text = header.get("TRIMSEC") or header.get("DATASEC")
    if trim_text is None:
        msg = "BIASSEC is present but neither TRIMSEC nor DATASEC says where the image is"
        raise FrameError(msg)
    return bias, parse_section(trim_text, key="TRIMSEC")


def normalised(header: fits.Header, settings=None, filename=None) -> dict:
    """Everything redux needs to know of a frame, in one vocabulary."""
    return {
        "frametype": frame_type(header, settings=settings, filename=filename),
        "imagetyp": str(first(header, ("IMAGETYP", "OBSTYPE"), "")),
        "object": str(header.get("OBJECT", "")),
        "filter": filter_name(header, settings=settings),
        "exptime": exptime(header),
        "binning": binning(header),
        "gain": gain(header, settings),
        "read_noise": read_noise(header, settings),
        "ccd_temp": number(header, TEMP_KEYS),
        "airmass": number(header, AIRMASS_KEYS),
        "date_obs": str(header.get("DATE-OBS", "")),
        "saturate": saturation(header, settings),
        "biassec": str(header.get("BIASSEC", "")),
        "trimsec": str(header.get("TRIMSEC", header.get("DATASEC", ""))),
    }
