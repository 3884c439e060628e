"""Reading MUSE files: `read_image` (a 2-D map with its error and WCS), `read_cube`, `resolution_arcsec`; units parsed and converted to cgs."""

from __future__ import annotations

import logging
import math
import re
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from ..errors import ReduxError
from ..fitsio import unreadable_as
from ..skywcs import pixel_area_arcsec2
from .images import DATA_NAMES, FLAMBDA_UNIT, FLUX_UNIT, SIGMA_NAMES, VARIANCE_NAMES, Cube, Image

log = logging.getLogger(__name__)

def _open(path, what) -> fits.HDUList:
    with unreadable_as(ReduxError, Path(path), what=what,
                       advice="check the file, or its path in the manifest's 'muse:' entry"):
        return fits.open(path, mode="readonly")


def _extname(hdu) -> str:
    return str(hdu.header.get("EXTNAME", "PRIMARY" if isinstance(hdu, fits.PrimaryHDU)
                              else "")).strip().upper()


def _image_hdus(hdul):
    return [h for h in hdul if isinstance(h, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))
            and h.header.get("NAXIS", 0) >= 2]


def _find_ext(hdul, ext, path, what):
    """The HDU of ``ext`` (name or index), or the data image: DATA/SCI, else the first."""
    if ext is not None:
        try:
            return hdul[ext.upper() if isinstance(ext, str) else ext]
        except (KeyError, IndexError):
            names = [_extname(h) or str(i) for i, h in enumerate(hdul)]
            msg = f"{path}: no extension {ext!r} ({what}); it has {names}"
            raise ReduxError(msg) from None
    images = _image_hdus(hdul)
    if not images:
        msg = f"{path}: holds no image ({what}); check the file"
        raise ReduxError(msg)
    for name in DATA_NAMES:
        for h in images:
            if _extname(h) == name:
                return h
    return images[0]


def _error_hdu(hdul, hdu):
    """The extension holding ``hdu``'s error, and whether it is a variance."""
    names = {_extname(h): h for h in hdul}
    pointer = str(hdu.header.get("ERRDATA", "")).strip().upper()  # ESO data-format keyword
    if pointer in names:
        err = names[pointer]
        cls = str(err.header.get("HDUCLAS3", "")).strip().upper()
        return err, cls != "RMSE" and (cls == "MSE" or pointer in VARIANCE_NAMES)
    own = _extname(hdu)
    for suffix in ("_ERR", "_ERROR", "_UNCERT", "_SIGMA"):
        if own + suffix in names:
            return names[own + suffix], False
    for name in VARIANCE_NAMES:
        if name in names:
            return names[name], True
    for name in SIGMA_NAMES:
        if name in names:
            return names[name], False
    return None, False


def _parse_unit(text, path, what, key="BUNIT"):
    """An astropy unit from a header string; MUSE's '10**(-20)*...' parses directly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        try:
            unit = u.Unit(text)
        except (ValueError, TypeError):
            unit = None
        if unit is not None and u.A in getattr(unit, "bases", []):
            # 'erg/s/cm2/A': 'A' is the ampere to astropy, but Angstrom to whoever wrote it
            fixed = re.sub(r"(?<![A-Za-z])A(?![A-Za-z])", "Angstrom", text)
            try:
                unit = u.Unit(fixed)
                log.warning("%s: %s = %r read as %r ('A' taken for Angstrom)", path, key,
                            text, fixed)
            except (ValueError, TypeError):
                unit = None
    return unit


def _cgs_factor(bunit, path, what, *, expect, pixel_area_arcsec2=None, fscale=None):
    """Factor turning values in ``bunit`` into ``expect`` (per spaxel), and its name.

    ``expect`` is a tuple of acceptable target units; a surface brightness (per arcsec²)
    is accepted when the pixel area is known.
    """
    examples = {str(FLUX_UNIT): "erg/s/cm2 per spaxel, e.g. '10**(-20)*erg/s/cm**2'",
                str(FLAMBDA_UNIT): "erg/s/cm2/Angstrom per spaxel, "
                                   "e.g. '10**(-20)*erg/s/cm**2/Angstrom'"}
    wanted = " or ".join(examples[str(t)] for t in expect)
    if bunit is None or not str(bunit).strip():
        hint = ""
        if fscale is not None:
            hint = (f" (FSCALE = {fscale:g} suggests an old MUSE product in {fscale:g} "
                    "erg/s/cm2/Angstrom: if so, give bunit='10**(-20)*erg/s/cm**2/Angstrom')")
        msg = (f"{path}: {what} has no BUNIT; expected {wanted}; add BUNIT to the header "
               f"or give the unit with bunit=...{hint}")
        raise ReduxError(msg)
    unit = _parse_unit(str(bunit), path, what)
    if unit is not None:
        for target in expect:
            if unit.is_equivalent(target):
                return unit.to(target), target
            if pixel_area_arcsec2 is not None and (unit * u.arcsec**2).is_equivalent(target):
                return (unit * u.arcsec**2).to(target) * pixel_area_arcsec2, target
    problem = "does not parse as a unit" if unit is None else f"is not a flux ({unit})"
    msg = (f"{path}: BUNIT = {bunit!r} of the {what} {problem}; expected {wanted}; "
           "fix BUNIT in the file (or give the unit with bunit=...)")
    raise ReduxError(msg)


def _celestial_wcs(header, path, what) -> WCS:
    ctypes = [str(header.get(f"CTYPE{i}", "")).upper() for i in (1, 2)]
    if not (any(c.startswith("RA") for c in ctypes) and any(c.startswith("DEC") for c in ctypes)):
        msg = (f"{path}: {what} has no celestial WCS (CTYPE1/CTYPE2 = {ctypes[0]!r}/"
               f"{ctypes[1]!r}, not RA/DEC): its pixels cannot be placed on the sky; "
               "use a file with its WCS (MUSE pipeline products have one)")
        raise ReduxError(msg)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header).celestial
    except Exception as exc:  # noqa: BLE001 - astropy raises many kinds on bad WCS keywords
        msg = f"{path}: the WCS of the {what} can't be read ({exc}); check its WCS keywords"
        raise ReduxError(msg) from None
    if wcs.naxis != 2:
        msg = f"{path}: {what} has no usable celestial WCS; check CTYPE1/CTYPE2"
        raise ReduxError(msg)
    return wcs


def _celestial_header(wcs, unit) -> fits.Header:
    header = wcs.to_header()
    header["BUNIT"] = unit
    return header


def read_image(path, *, what="MUSE Halpha map", ext=None, bunit=None) -> Image:
    """Read a 2-D MUSE map (or any flux image with a celestial WCS) in cgs units.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        A FITS file. The data are ``ext`` if given, else the extension named ``DATA``
        or ``SCI``, else the first image. Its error is the extension that ``ERRDATA``
        points to, else ``<ext>_ERR``, else one named ``STAT``/``VAR`` (a variance) or
        ``ERR``/``UNCERT``/``SIGMA`` (a standard deviation); a ``DQ`` extension
        (non-zero = bad) blanks pixels to NaN.
    what : str
        What the file is, for messages ('MUSE Halpha map').
    ext : str or int, optional
        The data extension, e.g. ``'HA6562_FLUX'`` of a PHANGS DAP map file.
    bunit : str, optional
        The unit when the header has none (or a wrong one).

    Returns
    -------
    `Image`
        float64 in erg s⁻¹ cm⁻² (a line map) or erg s⁻¹ cm⁻² Å⁻¹ (a band image) per
        pixel, whichever ``BUNIT`` is; per arcsec² is multiplied by the pixel area.
    """
    path = Path(path)
    with _open(path, what) as hdul:
        hdu = _find_ext(hdul, ext, path, what)
        if hdu.data is None or hdu.data.ndim < 2:
            msg = f"{path}: extension {_extname(hdu) or ext!r} holds no image ({what})"
            raise ReduxError(msg)
        data = np.asarray(hdu.data)
        if data.ndim > 2 and sum(n > 1 for n in data.shape) > 2:
            msg = (f"{path}: {what} is a cube {data.shape[::-1]} (x, y, wavelength), not a "
                   "2-D map; read it with muse.read_cube and make the map with "
                   "muse.line_maps (or muse.synthetic_band)")
            raise ReduxError(msg)
        data = data.reshape([n for n in data.shape if n > 1] or data.shape[-2:])
        header = hdu.header.copy()
        wcs = _celestial_wcs(header, path, what)
        area = pixel_area_arcsec2(wcs)
        factor, unit = _cgs_factor(bunit or header.get("BUNIT"), path, what,
                                   expect=(FLUX_UNIT, FLAMBDA_UNIT), pixel_area_arcsec2=area,
                                   fscale=header.get("FSCALE"))
        data = data.astype(np.float64) * factor
        err_hdu, is_var = _error_hdu(hdul, hdu)
        error = None
        if err_hdu is not None and err_hdu is not hdu and err_hdu.data is not None:
            e = np.asarray(err_hdu.data, dtype=np.float64)
            e = e.reshape([n for n in e.shape if n > 1] or e.shape[-2:])
            if e.shape != data.shape:
                msg = (f"{path}: error extension {_extname(err_hdu)} has shape {e.shape}, "
                       f"the data {data.shape} ({what}); check the file")
                raise ReduxError(msg)
            with np.errstate(invalid="ignore"):
                error = (np.sqrt(np.where(e >= 0, e, np.nan)) if is_var else e) * factor
        names = {_extname(h): h for h in hdul}
        if "DQ" in names and names["DQ"].data is not None \
                and names["DQ"].data.size == data.size:
            bad = np.asarray(names["DQ"].data).reshape(data.shape) != 0
            data[bad] = np.nan
            if error is not None:
                error[bad] = np.nan
    log.info("%s: %s, %d x %d px of %.3f\", BUNIT %r -> %s (x %.3g)%s", path, what,
             data.shape[1], data.shape[0], math.sqrt(area), header.get("BUNIT", bunit),
             unit, factor, "" if error is not None else ", no error extension")
    return Image(data=data, uncertainty=error, wcs=wcs, unit=str(unit), path=path, header=header)


#: header keywords that give a MUSE map's or cube's resolution (PSF FWHM, arcsec): the
#: suite's own ``FWHM``, then the ESO seeing keywords of a cube (the guide probe's median
#: seeing, the image-analysis FWHM).
FWHM_KEYS = ("FWHM", "HIERARCH ESO OCS SGS FWHM MED", "HIERARCH ESO TEL IA FWHM")
#: PHANGS-MUSE data-release products carry their resolution in the file name, as the
#: convolved-optimised ("copt") resolution: ``NGC1300_MAPS_copt_0.89asec.fits``,
#: ``NGC0628_PHANGS_DATACUBE_copt_0.92asec.fits``.
_COPT_NAME = re.compile(r"_copt_(\d+(?:\.\d+)?)asec", re.IGNORECASE)


def resolution_arcsec(header, path=None) -> tuple[float | None, str]:
    """A MUSE product's resolution (PSF FWHM, arcsec) from its header or name, and how.

    The header's `FWHM_KEYS` first, then the PHANGS-MUSE file-name convention
    ``..._copt_<FWHM>asec.fits``. ``(None, '')`` when neither says: the caller then
    fits it (`redux_helpers.anchoring.fit_beam`).

    Examples
    --------
    >>> resolution_arcsec(fits.Header(), "NGC1300_MAPS_copt_0.89asec.fits")
    (0.89, 'file name (PHANGS copt)')
    >>> resolution_arcsec(fits.Header({"FWHM": 0.7}))
    (0.7, 'header FWHM')
    """
    for key in FWHM_KEYS:
        if header is not None and key in header:
            try:
                value = float(header[key])
            except (TypeError, ValueError):
                continue
            if math.isfinite(value) and value > 0:
                return value, f"header {key.replace('HIERARCH ', '')}"
    if path is not None:
        m = _COPT_NAME.search(Path(path).name)
        if m:
            return float(m.group(1)), "file name (PHANGS copt)"
    return None, ""


def _spectral_axis(header, nwave, path) -> np.ndarray:
    ctype = str(header.get("CTYPE3", "")).upper()
    if not (ctype.startswith("AWAV") or ctype.startswith("WAVE")) \
            or "CRVAL3" not in header:
        msg = (f"{path}: the cube's third axis is not a wavelength (CTYPE3 = {ctype!r}; "
               "MUSE writes 'AWAV'); check that it is a MUSE cube with its WCS")
        raise ReduxError(msg)
    step = header.get("CD3_3")
    if step is None and "CDELT3" in header:
        step = float(header["CDELT3"]) * float(header.get("PC3_3", 1.0))
    if step is None:
        msg = f"{path}: the cube's header gives no wavelength step (CD3_3 or CDELT3)"
        raise ReduxError(msg)
    unit = _parse_unit(str(header.get("CUNIT3", "Angstrom")), path, "cube", key="CUNIT3")
    if unit is None or not unit.is_equivalent(u.AA):
        msg = (f"{path}: CUNIT3 = {header.get('CUNIT3')!r} is not a wavelength unit; "
               "expected 'Angstrom'")
        raise ReduxError(msg)
    if ctype[4:] not in ("", "-LOG") and ctype[4:].strip("-"):
        msg = f"{path}: non-linear wavelength axis CTYPE3 = {ctype!r} is not supported"
        raise ReduxError(msg)
    pix = np.arange(nwave, dtype=np.float64) + 1.0 - float(header.get("CRPIX3", 1.0))
    crval, step = float(header["CRVAL3"]), float(step)
    if ctype[4:] == "-LOG":
        wave = crval * np.exp(step * pix / crval)
    else:
        wave = crval + step * pix
    return wave * unit.to(u.AA)


def read_cube(path, *, bunit=None) -> Cube:
    """Read a MUSE cube: ``DATA``, ``STAT`` (variance) and ``DQ``, in cgs units.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        A MUSE cube (``DATACUBE_FINAL.fits`` or an mpdaf cube; ``.fits.gz`` works).
        The data are the extension ``DATA`` (else the first 3-D image); the variance
        ``STAT`` (or what ``ERRDATA`` names); pixels with ``DQ != 0`` become NaN.
    bunit : str, optional
        The unit when the header has none (or a wrong one).

    Returns
    -------
    `Cube`
        In erg s⁻¹ cm⁻² Å⁻¹ per spaxel.
    """
    path = Path(path)
    what = "MUSE cube"
    with _open(path, what) as hdul:
        cubes = [h for h in _image_hdus(hdul) if h.header.get("NAXIS") == 3]
        named = [h for h in cubes if _extname(h) == "DATA"]
        if not cubes:
            msg = (f"{path}: holds no cube (no 3-D image); a 2-D map is read with "
                   "muse.read_image")
            raise ReduxError(msg)
        hdu = (named or cubes)[0]
        header = hdu.header.copy()
        wcs = _celestial_wcs(header, path, what)
        factor, _ = _cgs_factor(bunit or header.get("BUNIT") or hdul[0].header.get("BUNIT"),
                                path, what, expect=(FLAMBDA_UNIT,))
        try:
            data = hdu.data.astype(np.float32)
        except (OSError, ValueError, TypeError) as exc:
            msg = f"{path}: the cube's data can't be read ({exc}); check the file"
            raise ReduxError(msg) from None
        data *= np.float32(factor)
        wave = _spectral_axis(header, data.shape[0], path)
        var = None
        err_hdu, is_var = _error_hdu(hdul, hdu)
        if err_hdu is not None and err_hdu is not hdu and err_hdu.data is not None:
            if err_hdu.data.shape != data.shape:
                msg = (f"{path}: {_extname(err_hdu)} has shape {err_hdu.data.shape}, DATA "
                       f"{data.shape}; check the file")
                raise ReduxError(msg)
            var = err_hdu.data.astype(np.float64)
            if not is_var:
                var **= 2
            var *= factor**2
            var[var < 0] = np.nan
        names = {_extname(h): h for h in hdul}
        if "DQ" in names and names["DQ"].data is not None \
                and names["DQ"].data.shape == data.shape:
            bad = np.asarray(names["DQ"].data) != 0
            data[bad] = np.nan
            if var is not None:
                var[bad] = np.nan
            log.debug("%s: %d pixels flagged in DQ", path, int(bad.sum()))
    cube = Cube(data=data, var=var, wave=wave, wcs=wcs, path=path, header=header)
    log.info("%s: cube of %d x %d spaxels x %d wavelengths, %.0f-%.0f Å (%s), BUNIT %r "
             "(x %.3g)%s", path, data.shape[2], data.shape[1], data.shape[0], wave[0],
             wave[-1], cube.medium, header.get("BUNIT", bunit), factor,
             "" if var is not None else ", no variance")
    return cube


