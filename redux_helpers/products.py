"""Every product of the chain, by name: which step makes it, its file name, what it holds.

`PRODUCTS` is the one table of product files. A notebook asks for a path with
``paths.product(key, ...)`` (`redux_helpers.targets.Paths.product`), never by spelling a
file name; `qa`, `masters`, `targets`, `report` and `fingerprint` read the same table, so
renaming a product is one line here. A name with fields is filled by `file_name`:

* ``{filter}`` — a filter's name made safe for a file name (`filter_part`: ``'H-alpha/6563'``
  gives ``H-alpha_6563``); the filter a stack holds is read back from its header
  (``FILTER``), never parsed out of its name (`stacks_in`);
* ``{stem}`` — a raw frame's name without its FITS suffix (`fitsio.frame_stem`);
* ``{temp}`` — a dark's temperature, ``-20`` for -20 °C.

>>> file_name("superflat", filter="H-alpha/6563")
'superflat_H-alpha_6563.fits'
>>> file_name("crmask", stem="ngc_R_001")
'ngc_R_001_crmask.fits'
>>> PRODUCTS["zeropoints"].step
'08_photometry'
>>> product_of("07_stack", "stack_R.fits"), product_of("06_badpix", "badpix.fits")
('stack', 'badpix')
>>> product_of("06_badpix", "notes.txt") is None
True
>>> filter_part("5 0"), filter_part("")
('5_0', 'none')
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path

STEPS = ("00_inspect", "01_superbias", "02_superflat", "03_cosmics", "04_calibrate",
         "05_background", "06_badpix", "07_stack", "08_photometry", "09_hii_regions",
         "10_halpha_muse", "11_qa")


@dataclass(frozen=True)
class Product:
    """One kind of product file: the step that makes it, its name pattern, what it holds."""

    step: str
    pattern: str
    what: str
    optional: bool = False     # made only on some nights (darks, a MUSE map, ...)


_P = Product
#: Every product file of the chain, by key. Keys are unique across steps.
PRODUCTS: dict[str, Product] = {
    # 00
    "inventory": _P("00_inspect", "inventory.ecsv", "every raw frame: type, filter, exposure, camera"),
    "problems": _P("00_inspect", "problems.ecsv", "what the inventory found wrong, file by file"),
    # 01
    "superbias": _P("01_superbias", "superbias.fits", "the master bias (e-), with UNCERT and MASK"),
    # 02
    "camera": _P("02_superflat", "camera.ecsv", "gain and read noise per camera setting, and where from"),
    "superflat": _P("02_superflat", "superflat_{filter}.fits", "the master flat of a filter, median 1"),
    "superdark": _P("02_superflat", "superdark_{temp}C.fits", "the master dark at one temperature",
                    optional=True),
    "superdark_any": _P("02_superflat", "superdark.fits", "the master dark (no temperature known)",
                        optional=True),
    "superdarks": _P("02_superflat", "superdarks.ecsv", "every superdark: binning, gain, temperature",
                     optional=True),
    "dark_matches": _P("02_superflat", "dark_matches.ecsv", "which superdark each frame uses",
                       optional=True),
    # 03
    "cosmics": _P("03_cosmics", "cosmics.ecsv", "hits per light frame: pixels, fraction, exposure"),
    "crmask": _P("03_cosmics", "{stem}_crmask.fits", "a light frame's cosmic-ray mask"),
    # 04
    "calibrated": _P("04_calibrate", "{stem}.fits", "a light frame in e-, bias/dark/flat corrected"),
    # 05
    "background": _P("05_background", "background.ecsv", "each frame's sky: level, rate, scatter, method"),
    "sky_subtracted": _P("05_background", "{stem}.fits", "a calibrated frame minus its sky"),
    # 06
    "badpix": _P("06_badpix", "badpix.fits", "the bad-pixel map of the chip (1 = bad)"),
    "repaired": _P("06_badpix", "{stem}.fits", "a sky-subtracted frame with bad pixels flagged"),
    # 07
    "registration": _P("07_stack", "registration.ecsv", "each frame's transform onto the stack"),
    "stack": _P("07_stack", "stack_{filter}.fits", "the stack of a filter (e-/s), UNCERT, MASK, COVERAGE"),
    # 08
    "calibrated_stack": _P("08_photometry", "stack_{filter}.fits",
                           "07's stack with its zero point and PHOTFLAM in the header"),
    "standards": _P("08_photometry", "standards.ecsv", "standard stars matched to the catalogue",
                    optional=True),
    "stars": _P("08_photometry", "stars.ecsv", "every star's magnitude in each filter"),
    "zeropoints": _P("08_photometry", "zeropoints.ecsv", "zero point and extinction per filter"),
    # 09
    "continuum_scale": _P("09_hii_regions", "continuum_scale.ecsv",
                          "the R-to-Halpha continuum scale and how it was measured"),
    "halpha_line": _P("09_hii_regions", "halpha_line.fits", "the continuum-subtracted Halpha image"),
    "hii_regions": _P("09_hii_regions", "hii_regions.ecsv", "the HII-region catalogue"),
    "hii_ds9": _P("09_hii_regions", "hii_regions.reg", "the catalogue as DS9 regions"),
    "hii_bubbles_2d": _P("09_hii_regions", "hii_bubbles_2d.html", "the catalogue as a 2-D bubble chart"),
    "hii_bubbles_3d": _P("09_hii_regions", "hii_bubbles_3d.html", "the catalogue as a 3-D bubble chart"),
    "knots_image": _P("09_hii_regions", "knots_image.fits", "the line image the regions were found on",
                      optional=True),
    # 10 (made only where the target has a MUSE map)
    **{key: _P("10_halpha_muse", f"{key}.fits", what, optional=True) for key, what in (
        ("halpha_contsub", "HST-like continuum-subtracted Halpha (cgs)"),
        ("halpha_contsub_sb", "the same as surface brightness (cgs / arcsec2)"),
        ("continuum", "the continuum under Halpha"),
        ("halpha_on_muse", "our Halpha on the MUSE grid and resolution"),
        ("muse_matched", "the MUSE map matched to our resolution"),
        ("muse_nii6583", "the MUSE [NII] 6583 map, when built from a cube"),
        ("muse_halpha", "the MUSE Halpha map, as read"),
        ("ratio", "ours / MUSE on the MUSE grid"),
        ("difference", "ours - MUSE on the MUSE grid"),
        ("anchored_on_muse", "our Halpha anchored to MUSE, on the MUSE grid"),
        ("halpha_anchored", "our Halpha anchored to MUSE, at our resolution"),
        ("halpha_anchored_repaired", "the same with star residuals repaired"),
        ("halpha_anchored_wnoise", "the same with noise where stars were repaired"))},
    "anchor_fit": _P("10_halpha_muse", "anchor_fit.ecsv", "the fit of ours against MUSE", optional=True),
    "nebulae": _P("10_halpha_muse", "nebulae.ecsv", "nebula fluxes, ours and MUSE's", optional=True),
    # 11
    "qa": _P("11_qa", "qa.ecsv", "one row per metric of every step, with a flag and a reason"),
    "report": _P("11_qa", "report.html", "the QA table as a page, with links to the notebooks"),
}
del _P

_FIELD_RE = {"filter": r"[A-Za-z0-9_.+-]+", "stem": r".+", "temp": r"[+-]?\d+"}


def filter_part(filt) -> str:
    """A file-name-safe form of a filter (or object) name: letters, digits, ``_.+-``."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(filt)).strip("_") or "none"


def _product(key) -> Product:
    try:
        return PRODUCTS[key]
    except KeyError:
        msg = f"unknown product {key!r}; products are {', '.join(PRODUCTS)}"
        raise KeyError(msg) from None


def fields_of(key) -> tuple[str, ...]:
    """The fields a product's name needs, e.g. ``('filter',)`` for ``'stack'``."""
    return tuple(f for _, f, _, _ in string.Formatter().parse(_product(key).pattern) if f)


def file_name(key, **fields) -> str:
    """The file name of product ``key``, its fields filled (``filter=``, ``stem=``, ``temp=``)."""
    need = set(fields_of(key))
    if need != set(fields):
        msg = (f"product {key!r} ({_product(key).pattern}) needs the fields "
               f"{sorted(need) or 'none'}; got {sorted(fields) or 'none'}")
        raise TypeError(msg)
    values = dict(fields)
    if "filter" in values:
        values["filter"] = filter_part(values["filter"])
    if "temp" in values:
        values["temp"] = f"{float(values['temp']):+.0f}"
    return _product(key).pattern.format(**values)


def path(folder_of, key, **fields) -> Path:
    """Where product ``key`` is: ``folder_of(step) / file_name(key, ...)``.

    ``folder_of`` is a target's `~redux_helpers.targets.Paths` (its ``step`` method is
    used) or a callable giving a step's folder.
    """
    step_folder = getattr(folder_of, "step", folder_of)
    return Path(step_folder(_product(key).step)) / file_name(key, **fields)


def of_step(step) -> dict[str, Product]:
    """The products a step makes, by key, in the table's order."""
    if step not in STEPS:
        msg = f"unknown step '{step}'; steps are {', '.join(STEPS)}"
        raise ValueError(msg)
    return {k: p for k, p in PRODUCTS.items() if p.step == step}


def _regex(pattern) -> re.Pattern:
    parts = []
    for literal, field, _, _ in string.Formatter().parse(pattern):
        parts.append(re.escape(literal))
        if field:
            parts.append(f"(?P<{field}>{_FIELD_RE[field]})")
    return re.compile("".join(parts) + r"\Z")


def product_of(step, name) -> str | None:
    """The key of the product a file called ``name`` in ``step``'s folder is, or None.

    Fixed names are tried before patterns, so ``badpix.fits`` in 06 is the bad-pixel map,
    not a frame called ``badpix``.
    """
    made = of_step(step)
    for key, p in sorted(made.items(), key=lambda kp: bool(fields_of(kp[0]))):
        if _regex(p.pattern).match(name):
            return key
    return None


def files_of(folder, step) -> list[Path]:
    """The files in ``folder`` that are products of ``step`` (temporary files left out)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and product_of(step, p.name))


def instances(folder_of, key) -> list[tuple[dict, Path]]:
    """The files of product ``key`` that exist, with the fields read off their names.

    E.g. ``instances(paths, 'superflat')`` gives ``[({'filter': 'Ha'}, .../superflat_Ha.fits),
    ...]``; a name's ``{filter}`` is its file-name form (`filter_part`), not always the
    filter as the header spells it. Sorted by file name.
    """
    step = _product(key).step
    step_folder = getattr(folder_of, "step", folder_of)
    folder = Path(step_folder(step))
    rx = _regex(_product(key).pattern)
    out = []
    for p in files_of(folder, step):
        m = rx.match(p.name)
        if m and product_of(step, p.name) == key:
            out.append((m.groupdict(), p))
    return out


def stack_file(folder, filt) -> Path:
    """The stack of one filter in a step's folder (07's or 08's): ``stack_<filter>.fits``."""
    return Path(folder) / file_name("stack", filter=filt)


def stacks_in(folder) -> dict[str, Path]:
    """The stacks in a step's folder, by the filter their header names (``FILTER``).

    A stack without a ``FILTER`` keyword is known by its file name's part.
    """
    found = {}
    folder = Path(folder)
    if not folder.is_dir():
        return found
    rx = _regex(PRODUCTS["stack"].pattern)
    for p in sorted(folder.glob("*.fits")):
        m = rx.match(p.name)
        if not m:
            continue
        try:
            from astropy.io import fits

            filt = fits.getheader(p).get("FILTER")
        except OSError:
            filt = None
        found[str(filt) if filt not in (None, "") else m["filter"]] = p
    return found


def check_not_products(raw_dir):
    """Refuse a raw folder that is (inside) a redux products folder (it has ``.redux/``)."""
    from .errors import ReduxError

    raw = Path(raw_dir).resolve()
    for folder in (raw, *list(raw.parents)[:2]):
        if (folder / ".redux").is_dir():
            msg = (f"raw_dir {raw_dir} is (inside) a redux products folder ({folder}): raw_dir "
                   "must name the telescope's raw frames, never products; fix raw_dir in the "
                   "manifest")
            raise ReduxError(msg)
