"""The targets the suite knows: reading and validating ``data_manifest.yaml``.

A manifest names each target (a night, a galaxy) and says what its files' headers
can't: where the raw frames are, which filter plays which role, gain and read noise
where no keyword gives them, filter codes, bad columns, keyword overrides, notebook
parameters. It is validated as a whole before anything runs: an unknown key, a wrong
type or a missing folder stops with a message naming the key and the file.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "raw").mkdir()
>>> _ = (d / "m.yaml").write_text("targets:\\n  night1:\\n    raw_dir: raw\\n")
>>> load_target("night1", d / "m.yaml").raw_dir == d / "raw"
True
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ManifestError

log = logging.getLogger(__name__)

NUMBER = (int, float)

#: What each key of a target (or of ``defaults``) may hold: (type, sub-keys, help).
#: Sub-keys of ``None`` mean a free mapping (its values still type-checked by ``values``).
TARGET_KEYS: dict[str, dict[str, Any]] = {
    "description": {"type": str, "help": "one line saying what this target is"},
    "raw_dir": {"type": str, "path": "dir", "help": "folder of raw FITS frames"},
    "demo": {
        "type": dict,
        "keys": {"size": int, "seed": int, "n_bias": int, "n_dark": int, "n_flat": int,
                 "n_light": int, "rotation_deg": NUMBER, "broken": bool},
        "limits": {"size": (64, 8192), "n_bias": (1, 200), "n_dark": (0, 200),
                   "n_flat": (1, 200), "n_light": (1, 200)},
        "help": "make the synthetic demo night into raw_dir on first use",
    },
    "gain": {"type": NUMBER, "help": "e-/ADU where no GAIN keyword gives it"},
    "read_noise": {"type": NUMBER, "help": "e- where no RDNOISE keyword gives it"},
    "saturate": {"type": NUMBER, "help": "raw ADU at which a pixel is saturated"},
    "filters": {"type": dict, "keys": {"halpha": str, "continuum": str},
                "help": "which filter plays which role"},
    "filter_keyword": {"type": str, "help": "header keyword that holds the filter"},
    "filter_codes": {"type": dict, "values": (str, int), "help": "header code -> filter name"},
    "filter_from_object": {"type": list, "items": str,
                           "help": "filter names to look for as words in OBJECT"},
    "frame_types": {"type": dict, "values": str,
                    "help": "file name -> bias/dark/flat/light/standard"},
    "exclude": {"type": list, "items": str, "help": "file names to leave out"},
    "header_overrides": {"type": dict, "values": dict,
                         "help": "file name (or '*') -> {KEYWORD: value}"},
    "standard_pattern": {"type": str, "help": "regular expression on OBJECT for standard fields"},
    "bad_columns": {"type": list, "items": int, "help": "1-based columns of the trimmed image"},
    "bad_rows": {"type": list, "items": int, "help": "1-based rows of the trimmed image"},
    "galaxy": {"type": dict,
               "keys": {"ra": NUMBER, "dec": NUMBER, "pa_deg": NUMBER,
                        "inclination_deg": NUMBER, "distance_mpc": NUMBER,
                        "x": NUMBER, "y": NUMBER, "redshift": NUMBER},
               "help": "the galaxy's centre (ra/dec, or x/y: 1-based pixels as DS9 shows "
                       "them, for images without a WCS), orientation (PA east of north), "
                       "distance and redshift"},
    "standards": {"type": str, "path": "file", "help": "ECSV of standard stars"},
    "extinction": {"type": dict, "values": NUMBER, "help": "filter -> mag/airmass"},
    "zero_point": {"type": dict, "values": NUMBER,
                   "help": "filter -> AB mag giving 1 e-/s above the atmosphere (no standards)"},
    "bandpasses": {"type": dict, "values": dict,
                   "help": "filter -> {pivot_A: ..., width_A: ...}: turns e-/s into erg/s/cm^2"},
    "contsub": {"type": dict, "keys": {"scale": NUMBER, "line_in_continuum": NUMBER},
                "help": "Halpha continuum subtraction: the continuum scale (else measured "
                        "from stars) and the line's rate in the continuum filter per rate "
                        "in the Halpha filter"},
    "muse": {"type": dict, "keys": {"halpha_map": str, "nebula_mask": str,
                                    "nebula_catalog": str, "cube": str, "filter_curves": str},
             "help": "MUSE products: an Halpha map or a cube, a nebula mask and catalogue, "
                     "and filter curves (FITS, one table per filter) for bands made from "
                     "the cube"},
    "hst": {"type": dict, "keys": {"halpha": str, "continuum": list}, "help": "HST images"},
    "stacks": {"type": dict, "values": str, "help": "filter -> already reduced stack"},
    "params": {"type": dict, "values": (str, int, float, bool, list),
               "help": "notebook parameters for this target"},
}
TOP_KEYS = {"defaults", "targets"}


@dataclass(frozen=True)
class Target:
    """One validated target: its name, raw folder and merged settings."""

    name: str
    manifest: Path
    settings: dict = field(default_factory=dict)

    @property
    def raw_dir(self) -> Path | None:
        raw = self.settings.get("raw_dir")
        return Path(raw) if raw else None

    def get(self, key, default=None):
        """A setting of this target (per-target value, else the manifest default)."""
        return self.settings.get(key, default)

    @property
    def place(self) -> str:
        """Where a line for this target goes, for messages: ``under `m13:` in /path/night.yaml``."""
        return f"under `{self.name}:` in {self.manifest}"


def _typename(t) -> str:
    if t == NUMBER:
        return "a number"
    if isinstance(t, tuple):
        return " or ".join(_typename(x) for x in t)
    return {str: "text", int: "a whole number", float: "a number", bool: "true/false",
            dict: "a mapping", list: "a list"}.get(t, t.__name__)


def _suggest(key, known) -> str:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_type(value, expected, where, mpath):
    # bool is an int in Python; a number key must not silently take true/false
    if isinstance(value, bool) and expected is not bool and not (
            isinstance(expected, tuple) and bool in expected):
        ok = False
    else:
        ok = isinstance(value, expected)
    if not ok:
        msg = (f"{mpath}: '{where}' should be {_typename(expected)}, "
               f"got {value!r}; fix it in the manifest")
        raise ManifestError(msg)


def _validate_entry(entry, where, mpath):
    if not isinstance(entry, dict):
        msg = f"{mpath}: '{where}' should be a mapping of settings, got {entry!r}"
        raise ManifestError(msg)
    for key, value in entry.items():
        spec = TARGET_KEYS.get(key)
        if spec is None:
            msg = (f"{mpath}: unknown key '{where}.{key}'{_suggest(key, TARGET_KEYS)}; "
                   f"known keys are: {', '.join(sorted(TARGET_KEYS))}")
            raise ManifestError(msg)
        _check_type(value, spec["type"], f"{where}.{key}", mpath)
        if "keys" in spec:
            for sub, subval in value.items():
                if sub not in spec["keys"]:
                    msg = (f"{mpath}: unknown key '{where}.{key}.{sub}'"
                           f"{_suggest(sub, spec['keys'])}; known: {', '.join(spec['keys'])}")
                    raise ManifestError(msg)
                _check_type(subval, spec["keys"][sub], f"{where}.{key}.{sub}", mpath)
                lo, hi = spec.get("limits", {}).get(sub, (None, None))
                if lo is not None and not lo <= subval <= hi:
                    msg = (f"{mpath}: '{where}.{key}.{sub}' is {subval}; it must be from {lo} "
                           f"to {hi}; fix it in the manifest")
                    raise ManifestError(msg)
        for sub, subval in (value.items() if "values" in spec else ()):
            _check_type(subval, spec["values"], f"{where}.{key}.{sub}", mpath)
        for i, item in enumerate(value if "items" in spec else ()):
            _check_type(item, spec["items"], f"{where}.{key}[{i}]", mpath)
        if key == "header_overrides":
            _check_overrides(value, f"{where}.{key}", mpath)


#: Header keywords redux reads as numbers: an override must give a number.
NUMERIC_KEYWORDS = {"EXPTIME", "EXPOSURE", "ITIME", "EXPTIM", "GAIN", "EGAIN", "RDNOISE",
                    "READNOIS", "AIRMASS", "SECZ", "SATURATE", "SATLEVEL", "CCD-TEMP",
                    "CCDTEMP", "XBINNING", "YBINNING"}


def _check_overrides(table, where, mpath):
    """Keyword overrides must be FITS-writable: 8-character ASCII names, ASCII or numbers."""
    for name, cards in table.items():
        for key, value in cards.items():
            at = f"{where}.{name}.{key}"
            text = str(key)
            if not text.isascii() or len(text) > 8 or not text.strip():
                msg = (f"{mpath}: '{at}': a FITS keyword is 1-8 ASCII characters; "
                       "fix the keyword's name in the manifest")
                raise ManifestError(msg)
            if isinstance(value, str) and not value.isascii():
                msg = (f"{mpath}: '{at}' is {value!r}: FITS headers hold ASCII text only; "
                       "write it without accents or symbols")
                raise ManifestError(msg)
            if text.upper() in NUMERIC_KEYWORDS and (isinstance(value, bool)
                                                     or not isinstance(value, (int, float))):
                msg = (f"{mpath}: '{at}' is {value!r}, but {text.upper()} is a number; write "
                       f"it without quotes or units, e.g. {text}: 30")
                raise ManifestError(msg)
            if not isinstance(value, (str, int, float, bool)):
                msg = f"{mpath}: '{at}' should be text, a number or true/false, got {value!r}"
                raise ManifestError(msg)


def read_manifest(path) -> dict:
    """Read and validate a whole manifest; return its parsed mapping.

    Raises `ManifestError` naming the file and key for any problem.
    """
    mpath = Path(path)
    if not mpath.is_file():
        msg = (f"manifest {mpath} not found; pass --manifest with the path of your "
               "data_manifest.yaml")
        raise ManifestError(msg)
    try:
        doc = yaml.safe_load(mpath.read_text())
    except yaml.YAMLError as exc:
        msg = f"{mpath} is not valid YAML: {exc}"
        raise ManifestError(msg) from None
    if not isinstance(doc, dict) or "targets" not in doc:
        msg = f"{mpath}: a manifest needs a top-level 'targets:' mapping"
        raise ManifestError(msg)
    for key in doc:
        if key not in TOP_KEYS:
            msg = (f"{mpath}: unknown top-level key '{key}'{_suggest(key, TOP_KEYS)}; "
                   "a manifest has 'defaults' and 'targets'")
            raise ManifestError(msg)
    defaults = doc.get("defaults") or {}
    _validate_entry(defaults, "defaults", mpath)
    targets = doc["targets"]
    if not isinstance(targets, dict) or not targets:
        msg = f"{mpath}: 'targets' should map target names to their settings"
        raise ManifestError(msg)
    for name, entry in targets.items():
        _validate_entry(entry or {}, f"targets.{name}", mpath)
    return doc


def target_names(path) -> list[str]:
    """The names of the targets in a manifest."""
    return list(read_manifest(path)["targets"])


def load_target(name, path, *, check_paths=True) -> Target:
    """Validate the manifest and return one target with defaults merged in.

    Relative paths are resolved against the manifest's folder. With ``check_paths``,
    a ``raw_dir`` that doesn't exist is an error unless the target is a ``demo`` (made
    on first use), and so is a named file that doesn't exist.
    """
    mpath = Path(path).resolve()
    doc = read_manifest(mpath)
    targets = doc["targets"]
    if name not in targets:
        msg = (f"target '{name}' is not in {mpath}{_suggest(name, targets)}; "
               f"known targets: {', '.join(targets)}")
        raise ManifestError(msg)
    settings = {}
    for source in (doc.get("defaults") or {}, targets[name] or {}):
        for key, value in source.items():
            if isinstance(value, dict) and isinstance(settings.get(key), dict):
                settings[key] = {**settings[key], **value}
            else:
                settings[key] = value
    for key, spec in TARGET_KEYS.items():
        if "path" in spec and key in settings:
            p = Path(settings[key]).expanduser()
            settings[key] = str(p if p.is_absolute() else (mpath.parent / p).resolve())
            exists = Path(settings[key]).is_dir() if spec["path"] == "dir" \
                else Path(settings[key]).is_file()
            if check_paths and not exists and "demo" not in settings:
                what = ("is a file, not a folder" if spec["path"] == "dir"
                        else "is a folder, not a file") if Path(settings[key]).exists() \
                    else "does not exist"
                msg = (f"{mpath}: targets.{name}.{key} points to {settings[key]}, "
                       f"which {what}; fix the path (relative paths are relative "
                       "to the manifest)")
                raise ManifestError(msg)
    for key in ("muse", "hst", "stacks"):
        if key in settings:
            settings[key] = _resolve_nested(settings[key], mpath.parent)
    return Target(name=name, manifest=mpath, settings=settings)


def _resolve_nested(value, base: Path):
    if isinstance(value, dict):
        return {k: _resolve_nested(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_nested(v, base) for v in value]
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())
