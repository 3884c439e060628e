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
# The camera's gain and read noise: every spelling redux knows, in ONE table, as IRAF's
# instrument translation files (ccddb$) and DRAGONS' per-instrument descriptors keep
# them. For each quantity: the single keywords in the order they are trusted (the first
# present wins), then per-amplifier families (a regular expression whose group is the
# amplifier), used only when no single keyword is present and only when the amplifiers
# agree within `AMP_TOLERANCE`. ESO's ``HIERARCH ESO DET OUTi GAIN/CONAD`` are left out:
# whether they are e-/ADU or ADU/e- differs between instruments.
CAMERA_KEYWORDS = {
    "gain": {
        "unit": "e-/ADU",
        "keys": (
            # EGAIN first: MaxIm DL, SGP and N.I.N.A. write the electrons per ADU (ASCOM's
            # Camera.ElectronsPerADU) as EGAIN and, for CMOS cameras (ZWO, QHY, ...), the
            # camera's gain *setting* (e.g. GAIN = 120, in 0.1 dB) as GAIN.
            ("EGAIN", "MaxIm DL / SGP / N.I.N.A.: electrons per ADU"),
            ("GAIN", "IRAF ccdred, DRAGONS, most observatories (e.g. SAAO)"),
            ("CCDGAIN", "HST ACS/WFC3 and several observatory CCD controllers"),
            ("ATODGAIN", "HST WFPC2: analogue-to-digital gain"),
            ("EPADU", "IRAF daophot datapars: electrons per ADU"),
        ),
        "per_amp": (
            (r"GAIN_?(\d{1,2})", "GAIN1..GAINn, GAIN_1..GAIN_n"),
            (r"GAIN([A-D])", "GAINA..GAIND"),
            (r"ATODGN([A-D])", "HST ACS/WFC3: ATODGNA..ATODGND"),
        ),
    },
    "read_noise": {
        "unit": "e-",
        "keys": (
            ("RDNOISE", "IRAF ccdred, DRAGONS, most observatories (e.g. SAAO)"),
            ("READNOIS", "IRAF ccdred's 8-character spelling"),
            ("READNOISE", "HIERARCH-free long spelling (e.g. NOAO, some amateur programs)"),
            ("RON", "read-out noise, ESO-style and several European observatories"),
            ("READNOI", "7-character spelling (e.g. Lick, KPNO Mosaic)"),
            ("ENOISE", "electron read noise, by analogy with EGAIN"),
            ("RDNOIS", "6-character spelling"),
        ),
        "per_amp": (
            (r"RDNOISE_?(\d{1,2})", "RDNOISE1..n, RDNOISE_1..n"),
            (r"RON_?(\d{1,2})", "RON1..n"),
            (r"READNSE([A-D])", "HST ACS/WFC3: READNSEA..READNSED"),
        ),
    },
}
AMP_TOLERANCE = 0.01   # per-amplifier values within 1 % of each other are one value

# A header whose GAIN is a whole number and that comes from a CMOS camera program (an
# OFFSET keyword beside it, or one of these names in INSTRUME/SWCREATE/CAMERA) gives the
# camera's gain *setting* in GAIN, not e-/ADU: redux doesn't read it as a gain.
CMOS_SETTING_HINTS = re.compile(r"(?i)\b(zwo|asi ?\d|qhy|touptek|player ?one|altair|"
                                r"sharpcap|n\.?i\.?n\.?a|asiair|firecapture|svbony)")

GAIN_KEYS = tuple(k for k, _ in CAMERA_KEYWORDS["gain"]["keys"])
RDNOISE_KEYS = tuple(k for k, _ in CAMERA_KEYWORDS["read_noise"]["keys"])
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


def type_from_words(text) -> str | None:
    """The frame type an IMAGETYP-like value names, or None if it names none redux knows.

    >>> type_from_words("Dome Flat"), type_from_words("ARC")
    ('flat', None)
    """
    words = _words(text).replace("dome flat", "domeflat").replace("sky flat", "skyflat")
    for name, keys in _TYPE_WORDS:
        if any(w in keys or w.endswith("flat") and name == "flat" for w in words.split()):
            return name
    return None


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
    kind = type_from_words(first(header, ("IMAGETYP", "OBSTYPE", "FRAME", "CCDTYPE"), ""))
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
    obj_words = object_words(header.get("OBJECT", ""))
    for name in settings.get("filter_from_object") or ():
        if name in obj_words:
            return name
    return None


def object_words(text) -> list[str]:
    """The words of an OBJECT value, as ``filter_from_object`` looks for filter names.

    >>> object_words("M-92 B")
    ['M', '92', 'B']
    """
    return str(text).replace("-", " ").split()


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


def number(header, keys, *, settings: dict | None = None, setting: str | None = None):
    """A number from the first of ``keys``, else the manifest ``setting``, else None."""
    v = first(header, keys)
    if v is None and settings and setting:
        v = settings.get(setting)
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def _as_float(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) and f > 0 else None


def _gain_is_a_setting(header, value) -> bool:
    """True when GAIN is a CMOS camera's gain setting rather than e-/ADU."""
    if float(value) != int(float(value)):
        return False
    names = " ".join(str(header.get(k, "")) for k in ("INSTRUME", "SWCREATE", "CAMERA"))
    return "OFFSET" in header or bool(CMOS_SETTING_HINTS.search(names))


def camera_keyword(header, quantity: str) -> tuple:
    """The gain or read noise a header gives, with the keyword it came from.

    Reads `CAMERA_KEYWORDS` top to bottom: the first single keyword present (blank or
    non-positive values are not values), else one per-amplifier family whose values
    agree within `AMP_TOLERANCE`.

    Parameters
    ----------
    header : `~astropy.io.fits.Header`
        A frame's header.
    quantity : {'gain', 'read_noise'}
        Which number (e-/ADU, or e-).

    Returns
    -------
    value : float or None
        The number, or None when the header doesn't give it.
    source : str
        The keyword (``'EGAIN'``, ``'GAIN1..GAIN4'``), or why there is none.
    problem : str
        Empty, or what stops the frame from being reduced (amplifiers that disagree).

    Examples
    --------
    >>> from astropy.io import fits
    >>> camera_keyword(fits.Header({"GAIN": 120, "EGAIN": 0.25, "OFFSET": 30}), "gain")
    (0.25, 'EGAIN', '')
    >>> camera_keyword(fits.Header({"GAIN1": 2.01, "GAIN2": 2.0}), "gain")[:2]
    (2.005, 'GAIN1..GAIN2')
    """
    table = CAMERA_KEYWORDS[quantity]
    notes = []
    for key, _ in table["keys"]:
        v = _as_float(header.get(key))
        if v is None:
            continue
        if quantity == "gain" and key == "GAIN" and _gain_is_a_setting(header, v):
            notes.append(f"GAIN = {header[key]} is a CMOS camera's gain setting, not e-/ADU")
            continue
        return v, key, ""
    for pattern, _ in table["per_amp"]:
        found = {}
        for key in header:
            m = re.fullmatch(pattern, str(key))
            v = _as_float(header.get(key)) if m else None
            if v is not None:
                found[m.group(1)] = (key, v)
        if not found:
            continue
        keys = [found[a][0] for a in sorted(found)]
        values = np.array([found[a][1] for a in sorted(found)])
        label = keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"
        spread = (values.max() - values.min()) / np.median(values)
        if spread <= AMP_TOLERANCE:
            return float(np.mean(values)), label, ""
        listed = ", ".join(f"{k} = {v:g}" for k, v in zip(keys, values, strict=True))
        problem = (f"per-amplifier {quantity.replace('_', ' ')}s differ by "
                   f"{100 * spread:.0f} % ({listed}): this frame needs per-amplifier "
                   "calibration, which redux doesn't do")
        return None, label, problem
    return None, "; ".join(notes) or "none", ""


def gain(header, settings=None):
    """e-/ADU: a `CAMERA_KEYWORDS` gain keyword, else the manifest's ``gain``, else None."""
    v = camera_keyword(header, "gain")[0]
    return v if v is not None else number({}, (), settings=settings, setting="gain")


def read_noise(header, settings=None):
    """Read noise in e-: a `CAMERA_KEYWORDS` keyword, else the manifest's ``read_noise``."""
    v = camera_keyword(header, "read_noise")[0]
    return v if v is not None else number({}, (), settings=settings, setting="read_noise")


def camera(header, settings=None) -> dict:
    """Gain and read noise of a frame with where each came from (header key or manifest).

    Returns a dict with ``gain``, ``gain_key``, ``read_noise``, ``read_noise_key`` and
    ``camera_problem`` (see `camera_keyword`); a value the header and the manifest don't
    give is None.
    """
    out, problems = {}, []
    for quantity in ("gain", "read_noise"):
        v, key, problem = camera_keyword(header, quantity)
        if v is None and problem:
            problems.append(problem)
        elif v is None and settings and settings.get(quantity) is not None:
            v, key = _as_float(settings[quantity]), "manifest"
        out[quantity], out[f"{quantity}_key"] = v, key
    out["camera_problem"] = "; ".join(problems)
    return out


def pedestal(header) -> float:
    """ADU to add to a raw frame's values to get the camera's (``PEDESTAL``, else 0).

    MaxIm DL writes the frames it calibrates with an offset that keeps them positive and
    says so in ``PEDESTAL`` ("correction to add for zero-based ADU", e.g. -500 for 500
    ADU added). Left in, it would count as signal: 500 ADU of Poisson noise in every
    pixel's uncertainty. `fitsio.read_frame` and `calibrate.FrameReader` add it.
    """
    v = number(header, ("PEDESTAL",))
    return 0.0 if v is None or not np.isfinite(v) else v


def saturation(header, settings=None) -> float:
    """ADU at which a raw pixel is saturated, on the scale redux reads it in.

    ``SATURATE`` keyword, else the manifest's ``saturate``, else the top of the raw
    integer range (65535 for ``BITPIX=16`` with ``BZERO=32768``, 32767 without), else
    infinity for floating-point data; each as the file's values, so a ``PEDESTAL`` moves
    it as it moves the data (see `pedestal`).
    """
    v = number(header, ("SATURATE", "SATLEVEL"), settings=settings, setting="saturate")
    if v is None:
        bitpix = int(header.get("BITPIX", -32))
        if bitpix <= 0:
            return float(np.inf)
        top = 2 ** (bitpix - 1) - 1
        v = float(top * header.get("BSCALE", 1) + header.get("BZERO", 0))
    return v + pedestal(header)


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
        **camera(header, settings),
        "ccd_temp": number(header, TEMP_KEYS),
        "airmass": number(header, AIRMASS_KEYS),
        "date_obs": str(header.get("DATE-OBS", "")),
        "saturate": saturation(header, settings),
        "biassec": str(header.get("BIASSEC", "")),
        "trimsec": str(header.get("TRIMSEC", header.get("DATASEC", ""))),
    }
