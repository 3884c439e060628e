"""MUSE inputs of step 10: Hα maps, cubes, synthetic broad bands and nebulae.

Step 10 anchors a narrow-band Hα image to MUSE, whose integral-field spectra measure
the Hα line apart from its [NII] neighbours and from the stellar continuum. This module
brings MUSE products into the suite's units and grids:

1. `read_image` reads a 2-D map (an Hα flux map, a white-light or band image) with its
   error and celestial WCS; `read_cube` reads a cube (``DATA``/``STAT``/``DQ``).
2. `line_maps` measures Hα, [NII]6548 and [NII]6583 in every spaxel of a cube: a
   straight-line continuum fitted to two bands either side of the whole Hα+[NII]
   complex, then the continuum-subtracted spectrum summed over a window around each
   line. The redshift comes from the caller or from the cube's summed spectrum
   (`estimate_redshift`).
3. `read_filter_curve`, `pivot_wavelength` and `synthetic_band` turn the cube into
   the image a broad- or narrow-band filter would have seen, to compare MUSE with HST
   or ground-based photometry (the continuum under Hα, the flux scale).
4. `read_nebulae` and `nebula_sums` read a PHANGS-style nebula mask and catalogue and
   add up any image on the mask's grid nebula by nebula.

Units: everything returned is cgs per spaxel (per pixel of the image): line and band
fluxes in erg s⁻¹ cm⁻² (`FLUX_UNIT`), flux densities in erg s⁻¹ cm⁻² Å⁻¹
(`FLAMBDA_UNIT`). The files' ``BUNIT`` (MUSE: ``'10**(-20)*erg/s/cm**2/Angstrom'``) is
parsed with `astropy.units` and converted; a surface brightness (per arcsec²) is
multiplied by the pixel area. An error extension is taken in the data extension's
unit (squared for a variance): MUSE's pipeline writes a ``STAT`` ``BUNIT`` that is not
the square of the data's (``'.../Angstrom**2'``), so its own ``BUNIT`` is not trusted.

Wavelengths are in Å as the cube's header gives them: MUSE cubes are in air
(``CTYPE3 = 'AWAV'``) and the rest wavelengths used are then those in air; a cube in
vacuum (``'WAVE'``) gets the vacuum ones. Pixel positions are 0-based.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_area, proj_plane_pixel_scales
from scipy import ndimage, optimize, signal

from .errors import ReduxError

log = logging.getLogger(__name__)

#: speed of light, km/s.
C_KMS = 299792.458
#: rest wavelengths in air (Å) of the lines measured, as MUSE cubes are in air.
REST_AIR = {"nii_6548": 6548.05, "halpha": 6562.80, "nii_6583": 6583.45}
#: the same in vacuum (Å), for a cube whose spectral axis is ``'WAVE'``.
REST_VACUUM = {"nii_6548": 6549.86, "halpha": 6564.61, "nii_6583": 6585.27}
#: the unit of line and band fluxes per spaxel.
FLUX_UNIT = u.erg / u.s / u.cm**2
#: the unit of flux densities per spaxel.
FLAMBDA_UNIT = FLUX_UNIT / u.AA
#: extension names of a variance and of a standard deviation.
VARIANCE_NAMES = ("STAT", "VAR", "VARIANCE")
SIGMA_NAMES = ("ERR", "ERROR", "UNCERT", "SIGMA", "NOISE", "RMS")
#: extension names preferred for the data when a file has several images.
DATA_NAMES = ("DATA", "SCI", "PRIMARY")
#: width (Å) of the running median taken as the continuum of the summed spectrum.
CONT_MEDIAN_AA = 200.0
#: a continuum band needs at least this many finite pixels in a spaxel.
MIN_BAND_PIXELS = 3
#: the mask value of 'no nebula' returned by `read_nebulae`.
BACKGROUND = -1
#: catalogue columns that may name the mask's ids, in order of preference.
ID_COLUMNS = ("region_ID", "region_id", "id", "ID", "nebula_id")


# ---- containers --------------------------------------------------------------------------
@dataclass
class Image:
    """A 2-D image on a celestial grid.

    Attributes
    ----------
    data : `~numpy.ndarray`
        The image, float64 in ``unit`` (a nebula mask from `read_nebulae`: int64 labels).
    error : `~numpy.ndarray` or None
        Its 1-sigma uncertainty in the same unit, or None.
    wcs : `~astropy.wcs.WCS`
        Celestial, 2-D.
    unit : str
        ``str(FLUX_UNIT)`` (erg / (s cm2)) or ``str(FLAMBDA_UNIT)``; '' for labels.
    path : `~pathlib.Path` or None
        The file it was read from, or the cube it was made from.
    header : `~astropy.io.fits.Header`
        The header of the data extension (of a made image: its WCS and ``BUNIT``).
    """

    data: np.ndarray
    error: np.ndarray | None
    wcs: WCS
    unit: str
    path: Path | None
    header: fits.Header = field(repr=False)

    @property
    def pixel_scale_arcsec(self) -> float:
        """Mean side of a pixel on the sky (arcsec), from ``proj_plane_pixel_scales``."""
        return float(np.mean(proj_plane_pixel_scales(self.wcs)) * 3600.0)

    @property
    def pixel_area_arcsec2(self) -> float:
        """Area of a pixel on the sky (arcsec²)."""
        return float(proj_plane_pixel_area(self.wcs) * 3600.0**2)


@dataclass
class Cube:
    """A MUSE cube in erg s⁻¹ cm⁻² Å⁻¹ per spaxel.

    Attributes
    ----------
    data : `~numpy.ndarray`
        (nwave, ny, nx); float32 as stored by MUSE (cgs values near 1e-20 are well
        inside float32's range), NaN where the ``DQ`` extension flags a pixel.
    var : `~numpy.ndarray` or None
        Its variance, float64: the square of 1e-20 is below float32's normal range.
    wave : `~numpy.ndarray`
        Wavelength of each plane (Å), air or vacuum as the header says (`medium`).
    wcs : `~astropy.wcs.WCS`
        The celestial 2-D part of the cube's WCS.
    path : `~pathlib.Path`
    header : `~astropy.io.fits.Header`
        The header of the ``DATA`` extension.
    """

    data: np.ndarray
    var: np.ndarray | None
    wave: np.ndarray
    wcs: WCS
    path: Path
    header: fits.Header = field(repr=False)

    @property
    def medium(self) -> str:
        """'air' (``CTYPE3 = 'AWAV'``, MUSE's) or 'vacuum' (``'WAVE'``)."""
        ctype = str(self.header.get("CTYPE3", "AWAV")).upper()
        return "vacuum" if ctype.startswith("WAVE") else "air"

    @property
    def wave_edges(self) -> np.ndarray:
        """The nwave + 1 edges (Å) of the wavelength pixels."""
        return _edges(self.wave)

    @property
    def unit(self) -> str:
        """The unit of ``data``: erg / (Angstrom s cm2) per spaxel."""
        return str(FLAMBDA_UNIT)


@dataclass
class LineMaps:
    """The Hα and [NII] maps of a cube (see `line_maps`).

    Attributes
    ----------
    halpha, nii_6583, nii_6548 : `Image`
        Line flux per spaxel (erg s⁻¹ cm⁻²) with its error.
    continuum : `Image`
        The fitted continuum at Hα (erg s⁻¹ cm⁻² Å⁻¹) with its error.
    redshift : float
    windows : dict
        Observed-frame wavelength ranges (Å) of the line windows (keys as the maps)
        and of the continuum bands ('cont_blue', 'cont_red'), as (low, high).
    """

    halpha: Image
    nii_6583: Image
    nii_6548: Image
    continuum: Image
    redshift: float
    windows: dict


# ---- reading -----------------------------------------------------------------------------
def _open(path, what) -> fits.HDUList:
    path = Path(path)
    try:
        return fits.open(path, mode="readonly")
    except FileNotFoundError:
        msg = f"{path}: file not found ({what}); check the path (manifest 'muse:' entry)"
        raise ReduxError(msg) from None
    except (OSError, TypeError, ValueError) as exc:
        msg = f"{path}: not a readable FITS file ({what}: {exc}); check the file or its path"
        raise ReduxError(msg) from None


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
        area = float(proj_plane_pixel_area(wcs) * 3600.0**2)
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
    return Image(data=data, error=error, wcs=wcs, unit=str(unit), path=path, header=header)


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


def _edges(wave) -> np.ndarray:
    """Pixel edges halfway between pixel centres, extrapolated at both ends."""
    wave = np.asarray(wave, dtype=np.float64)
    mid = 0.5 * (wave[1:] + wave[:-1])
    return np.concatenate([[2 * wave[0] - mid[0]], mid, [2 * wave[-1] - mid[-1]]])


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


# ---- line maps ---------------------------------------------------------------------------
def _rest(cube) -> dict:
    return REST_VACUUM if cube.medium == "vacuum" else REST_AIR


def _summed_spectrum(cube):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        spec = np.nansum(cube.data, axis=(1, 2), dtype=np.float64)
        var = None if cube.var is None else np.nansum(cube.var, axis=(1, 2))
    return spec, var


def _complex_model(rest):
    keys = ("halpha", "nii_6583", "nii_6548")

    def model(lam, z, sig_kms, a_ha, a_n2, a_n1, c0, c1):
        out = c0 + c1 * (lam - rest["halpha"] * (1 + z))
        for key, amp in zip(keys, (a_ha, a_n2, a_n1), strict=True):
            centre = rest[key] * (1 + z)
            sig = centre * sig_kms / C_KMS
            out = out + amp * np.exp(-0.5 * ((lam - centre) / sig) ** 2)
        return out

    return model


def fit_redshift(cube, *, min_snr=5.0, max_candidates=10) -> dict:
    """The redshift of the Hα+[NII] complex in the cube's summed spectrum, with details.

    The method:

    1. the spectrum summed over all spaxels, less a running median over
       `CONT_MEDIAN_AA` (the continuum), leaves the emission lines;
    2. its peaks above ``min_snr`` times the noise (the larger of the robust scatter of
       that line spectrum and the square root of the summed variance) are the
       candidates, strongest first;
    3. each candidate is tried as Hα and as [NII]6583 (which is the stronger line in
       LINERs and cool-core galaxies); the identification stands when both Hα and
       [NII]6583 then lie above 3 sigma at their expected places (±1.5 pixels); among
       those that stand, the one whose three lines (Hα, [NII]6583, [NII]6548) add up
       to the most wins;
    4. three Gaussians of common redshift and velocity dispersion over a straight
       continuum are fitted to the summed spectrum around the complex, which refines
       the redshift to a small fraction of a pixel.

    Returns
    -------
    dict
        ``z``, ``sigma_kms`` (the lines' velocity dispersion, instrumental included),
        ``peak`` (Å) and ``peak_is`` (the strongest candidate's identification),
        ``nii_ha`` (the fitted amplitude ratio [NII]6583/Hα), ``fitted`` (False when the
        fit failed and the candidate's redshift is returned).

    Raises
    ------
    ReduxError
        No peak identified as Hα or [NII]6583 with its partner line.
    """
    rest = _rest(cube)
    wave = cube.wave
    spec, var = _summed_spectrum(cube)
    dl = float(np.median(np.diff(wave)))
    size = max(3, int(CONT_MEDIAN_AA / dl) | 1)
    line = spec - ndimage.median_filter(spec, size=size, mode="nearest")
    mad = 1.4826 * float(np.median(np.abs(line - np.median(line))))
    noise = max(mad, 0.0 if var is None else float(np.sqrt(np.median(var))),
                1e-9 * float(np.max(np.abs(line))) or 1e-300)
    peaks, props = signal.find_peaks(line, height=min_snr * noise)
    order = np.argsort(props["peak_heights"])[::-1][:max_candidates]
    wmin, wmax = wave[0], wave[-1]

    def level(lam):
        if not wmin <= lam <= wmax:
            return None
        near = np.abs(wave - lam) <= 1.5 * dl
        return float(np.max(line[near])) if near.any() else None

    best = None
    for i in order:
        lam_p = float(wave[peaks[i]])
        for as_line in ("halpha", "nii_6583"):
            z = lam_p / rest[as_line] - 1.0
            levels = {k: level(rest[k] * (1 + z)) for k in rest}
            if levels["halpha"] is None or levels["nii_6583"] is None:
                continue
            if levels["halpha"] <= 3 * noise or levels["nii_6583"] <= 3 * noise:
                continue
            score = sum(v for v in levels.values() if v is not None)
            if best is None or score > best[0]:
                best = (score, z, lam_p, as_line)
    if best is None:
        strongest = f"{wave[peaks[order[0]]]:.1f} Å" if len(order) else "none"
        msg = (f"{cube.path}: no Hα with [NII]6583 beside it found in the cube's summed "
               f"spectrum ({len(peaks)} peaks above {min_snr:g} sigma; strongest: {strongest}); "
               "give the redshift (galaxy: redshift in the manifest, or the notebook's "
               "muse_redshift)")
        raise ReduxError(msg)
    _, z0, lam_p, as_line = best
    out = {"z": z0, "sigma_kms": float("nan"), "peak": lam_p, "peak_is": as_line,
           "nii_ha": float("nan"), "fitted": False}
    lo = rest["nii_6548"] * (1 + z0) * (1 - 3000.0 / C_KMS)
    hi = rest["nii_6583"] * (1 + z0) * (1 + 3000.0 / C_KMS)
    sel = (wave >= lo) & (wave <= hi) & np.isfinite(spec)
    scale = float(np.max(np.abs(spec[sel]))) or 1.0  # fit numbers near 1: cgs ones near 1e-17
    lam, y = wave[sel], spec[sel] / scale
    c0 = float(np.median(y))
    amps = [max(level(rest[k] * (1 + z0)) or 0.0, 0.0) / scale
            for k in ("halpha", "nii_6583", "nii_6548")]
    dz = 500.0 / C_KMS
    p0 = [z0, 150.0, *amps, c0, 0.0]
    bounds = ([z0 - dz, 5.0, 0, 0, 0, -np.inf, -np.inf],
              [z0 + dz, 2000.0, np.inf, np.inf, np.inf, np.inf, np.inf])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            popt, _ = optimize.curve_fit(_complex_model(rest), lam, y, p0=p0, bounds=bounds,
                                         x_scale="jac", max_nfev=2000)
        out.update(z=float(popt[0]), sigma_kms=float(popt[1]), fitted=True,
                   nii_ha=float(popt[3] / popt[2]) if popt[2] > 0 else float("nan"))
    except (RuntimeError, ValueError) as exc:
        log.warning("%s: the Gaussian fit of the Hα+[NII] complex failed (%s); using "
                    "z = %.5f from the peak at %.1f Å", cube.path, exc, z0, lam_p)
    log.info("%s: redshift from the summed spectrum: z = %.5f (the peak at %.1f Å taken "
             "as %s; fitted σ = %.0f km/s, [NII]6583/Hα peak ratio %.2f)",
             cube.path, out["z"], lam_p, "Hα" if as_line == "halpha" else "[NII]6583",
             out["sigma_kms"], out["nii_ha"])
    return out


def estimate_redshift(cube, *, min_snr=5.0) -> float:
    """The redshift from the Hα+[NII] complex of the summed spectrum (see `fit_redshift`)."""
    return fit_redshift(cube, min_snr=min_snr)["z"]


def _overlap(edges, lo, hi) -> np.ndarray:
    """Length (Å) of each pixel inside [lo, hi]."""
    return np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, None)


def _windows(rest, z, window_kms, cont_kms):
    centre = {k: rest[k] * (1 + z) for k in ("nii_6548", "halpha", "nii_6583")}
    half = {k: c * window_kms / C_KMS for k, c in centre.items()}
    win = {k: [centre[k] - half[k], centre[k] + half[k]] for k in centre}
    for left, right in (("nii_6548", "halpha"), ("halpha", "nii_6583")):
        mid = 0.5 * (centre[left] + centre[right])
        if win[left][1] > mid or win[right][0] < mid:
            log.info("±%.0f km/s around %s and %s would overlap: the windows meet halfway, "
                     "at %.2f Å (%.0f km/s from each)", window_kms, left, right, mid,
                     C_KMS * (mid - centre[left]) / centre[left])
            win[left][1] = min(win[left][1], mid)
            win[right][0] = max(win[right][0], mid)
    blue = centre["nii_6548"]
    red = centre["nii_6583"]
    win["cont_blue"] = [blue * (1 - cont_kms[1] / C_KMS), blue * (1 - cont_kms[0] / C_KMS)]
    win["cont_red"] = [red * (1 + cont_kms[0] / C_KMS), red * (1 + cont_kms[1] / C_KMS)]
    return centre, {k: tuple(float(x) for x in v) for k, v in win.items()}


def _check_range(cube, z, centre, windows, cont_kms):
    wmin, wmax = float(cube.wave_edges[0]), float(cube.wave_edges[-1])
    where = "check the redshift (galaxy: redshift in the manifest, or the notebook's muse_redshift)"
    lam = centre["halpha"]
    if not wmin <= lam <= wmax:
        msg = (f"{cube.path}: the cube covers {wmin:.0f}–{wmax:.0f} Å, but Hα at z = {z:.4f} "
               f"falls at {lam:.0f} Å — outside it; {where}")
        raise ReduxError(msg)
    for key in ("cont_blue", "cont_red", "nii_6548", "nii_6583"):
        lo, hi = windows[key]
        if lo < wmin or hi > wmax:
            name = {"cont_blue": "its blue continuum band", "cont_red": "its red continuum band",
                    "nii_6548": "[NII]6548", "nii_6583": "[NII]6583"}[key]
            msg = (f"{cube.path}: the cube covers {wmin:.0f}–{wmax:.0f} Å, but for Hα at "
                   f"z = {z:.4f} ({lam:.0f} Å) {name} spans {lo:.0f}–{hi:.0f} Å — outside "
                   f"it; {where}, or bring cont_kms = {tuple(cont_kms)} closer")
            raise ReduxError(msg)


def _line_fit_terms(band, x):
    """Sums of the least-squares straight line through each spaxel's finite band pixels."""
    m = np.isfinite(band)
    y = np.where(m, band, 0.0)
    xs = x[:, None, None] * m
    s0 = m.sum(axis=0).astype(np.float64)
    s1 = xs.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        xbar = s1 / s0
        sxx = (xs * x[:, None, None]).sum(axis=0) - s1 * xbar
        slope = ((xs * y).sum(axis=0) - xbar * y.sum(axis=0)) / sxx
        icpt = y.sum(axis=0) / s0 - slope * xbar
    return m, s0, xbar, sxx, slope, icpt


def line_maps(cube, *, redshift=None, window_kms=300.0, cont_kms=(1500.0, 3000.0)) -> LineMaps:
    """Hα, [NII]6583 and [NII]6548 flux maps, and the continuum at Hα, from a cube.

    In every spaxel a straight line is fitted (least squares, equal weights) to the
    finite pixels of two continuum bands: from ``cont_kms[0]`` to ``cont_kms[1]`` km/s
    bluewards of [NII]6548 and redwards of [NII]6583, so free of all three lines. A
    line's flux is the sum over its window, ±``window_kms`` around its redshifted
    centre, of (data − continuum) × pixel width, pixels cut by a window's edge counting
    by the fraction inside it. Windows never overlap: where ±``window_kms`` would
    reach past halfway to the neighbouring line, both windows stop halfway (logged).
    A spaxel with a NaN inside a line window, or fewer than `MIN_BAND_PIXELS` finite
    pixels in a band, is NaN in that map.

    Errors come from the cube's variance: the window pixels' and the continuum's under
    the window, propagated exactly through the straight-line fit (the bands are apart
    from the windows, so the two add in quadrature). The variance of a MUSE cube
    ignores the covariance its resampling puts between neighbouring pixels, so these
    errors are lower limits (typically by a few tens of per cent).

    Parameters
    ----------
    cube : `Cube`
    redshift : float, optional
        The galaxy's redshift; None estimates it from the cube (`fit_redshift`) and logs
        what it found.
    window_kms : float
        Half-width of each line's window (km/s). ±300 km/s holds 99 % of a line of
        velocity dispersion (instrumental included) up to ~115 km/s.
    cont_kms : (float, float)
        Inner and outer edge (km/s from [NII]6548 and [NII]6583) of the continuum bands.

    Returns
    -------
    `LineMaps`
    """
    cont_kms = (float(cont_kms[0]), float(cont_kms[1]))
    if not 0 < window_kms <= cont_kms[0] < cont_kms[1]:
        msg = (f"line_maps: need 0 < window_kms <= cont_kms[0] < cont_kms[1], got "
               f"window_kms = {window_kms}, cont_kms = {cont_kms}: the continuum bands must "
               "lie outside the line windows")
        raise ReduxError(msg)
    rest = _rest(cube)
    if redshift is None:
        found = fit_redshift(cube)
        redshift = found["z"]
        if np.isfinite(found["sigma_kms"]) and found["sigma_kms"] > window_kms / 2.5:
            log.warning("the lines are broad (σ = %.0f km/s): ±%.0f km/s windows miss %.1f %% "
                        "of each line; consider a larger window_kms", found["sigma_kms"],
                        window_kms,
                        100 * math.erfc(window_kms / found["sigma_kms"] / math.sqrt(2)))
    z = float(redshift)
    centre, windows = _windows(rest, z, window_kms, cont_kms)
    _check_range(cube, z, centre, windows, cont_kms)

    edges = cube.wave_edges
    lo = np.searchsorted(edges, windows["cont_blue"][0], side="right") - 1
    hi = np.searchsorted(edges, windows["cont_red"][1], side="left")
    lo, hi = max(lo, 0), min(hi, cube.wave.size)
    wave = cube.wave[lo:hi]
    x = wave - centre["halpha"]
    slab = cube.data[lo:hi].astype(np.float64)
    vslab = None if cube.var is None else cube.var[lo:hi]

    in_band = np.zeros(wave.size, bool)
    for key in ("cont_blue", "cont_red"):
        b = (wave >= windows[key][0]) & (wave <= windows[key][1])
        in_band |= b
    band = slab[in_band]
    m, s0, xbar, sxx, slope, icpt = _line_fit_terms(band, x[in_band])
    enough = np.ones(s0.shape, bool)
    for key in ("cont_blue", "cont_red"):
        b = (wave[in_band] >= windows[key][0]) & (wave[in_band] <= windows[key][1])
        enough &= m[b].sum(axis=0) >= MIN_BAND_PIXELS
    vband = None if vslab is None else np.where(m, vslab[in_band], 0.0)

    def cont_var(x0):
        """Variance of the fitted continuum at x0 (per spaxel)."""
        if vband is None:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            lj = m * (1.0 / s0 + (x0 - xbar) * (x[in_band][:, None, None] - xbar) / sxx)
        return (lj**2 * vband).sum(axis=0)

    header = _celestial_header(cube.wcs, str(FLUX_UNIT))
    header["REDSHIFT"] = (z, "redshift of the line windows")
    maps = {}
    for key in ("halpha", "nii_6583", "nii_6548"):
        ov = _overlap(edges[lo:hi + 1], *windows[key])
        use = ov > 0
        w = ov[use]
        total = w.sum()
        xw = float((w * x[use]).sum() / total)
        flux = np.tensordot(w, slab[use], axes=1) - total * (icpt + slope * xw)
        flux[~enough] = np.nan
        err = None
        if vslab is not None:
            var = np.tensordot(w**2, vslab[use], axes=1) + total**2 * cont_var(xw)
            err = np.sqrt(var)
            err[~np.isfinite(flux)] = np.nan
        h = header.copy()
        h["LINE"] = (key, "line of this map")
        h["LAMOBS"] = (centre[key], "[Angstrom] observed centre of the line")
        h["WINLO"], h["WINHI"] = windows[key]
        maps[key] = Image(data=flux, error=err, wcs=cube.wcs, unit=str(FLUX_UNIT),
                          path=cube.path, header=h)
    cont = np.where(enough, icpt, np.nan)
    cerr = None
    if vslab is not None:
        cerr = np.sqrt(cont_var(0.0))
        cerr[~enough] = np.nan
    h = _celestial_header(cube.wcs, str(FLAMBDA_UNIT))
    h["REDSHIFT"] = (z, "redshift of the line windows")
    h["LAMOBS"] = (centre["halpha"], "[Angstrom] continuum evaluated at Halpha")
    continuum = Image(data=cont, error=cerr, wcs=cube.wcs, unit=str(FLAMBDA_UNIT),
                      path=cube.path, header=h)
    log.info("line maps at z = %.5f: Hα window %.1f-%.1f Å, continuum bands %.0f-%.0f and "
             "%.0f-%.0f Å; %d of %d spaxels measured", z, *windows["halpha"],
             *windows["cont_blue"], *windows["cont_red"],
             int(np.isfinite(maps["halpha"].data).sum()), maps["halpha"].data.size)
    return LineMaps(halpha=maps["halpha"], nii_6583=maps["nii_6583"],
                    nii_6548=maps["nii_6548"], continuum=continuum, redshift=z,
                    windows=windows)


# ---- filters and synthetic bands ---------------------------------------------------------
def read_filter_curve(path, name) -> tuple[np.ndarray, np.ndarray]:
    """A filter's throughput curve from a FITS file of one table per filter.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        FITS file with one binary table extension per filter (mpdaf's
        ``filter_list.fits``: ``WFPC2_F814W``, ``ACS_F814W``, ``WFC3_F656N``,
        ``Cousins_R``, ...), columns ``lambda`` (Å unless ``TUNIT`` says otherwise) and
        ``throughput``.
    name : str
        An extension name (case-insensitive), or its end after an underscore when that
        is unique (``'F656N'``; ``'F814W'`` is ambiguous there).

    Returns
    -------
    wave, throughput : `~numpy.ndarray`
        Wavelength (Å, increasing) and throughput, float64.
    """
    path = Path(path)
    what = f"filter curve {name!r}"
    with _open(path, what) as hdul:
        tables = {_extname(h): h for h in hdul if isinstance(h, fits.BinTableHDU)}
        key = str(name).strip().upper()
        if key in tables:
            hdu = tables[key]
        else:
            cands = [n for n in tables if n.endswith("_" + key)]
            if len(cands) != 1:
                names = [str(hdul[n].header.get("EXTNAME")) for n in (cands or tables)]
                msg = (f"{path}: filter {name!r} is "
                       + ("ambiguous: it could be " if cands else "not there: it has ")
                       + ", ".join(names) + "; give one of these names")
                raise ReduxError(msg)
            hdu = tables[cands[0]]
        cols = {c.name.lower(): c for c in hdu.columns}
        if "lambda" not in cols or "throughput" not in cols:
            msg = (f"{path}: filter table {hdu.name} has columns "
                   f"{[c.name for c in hdu.columns]}; expected 'lambda' and 'throughput'")
            raise ReduxError(msg)
        wave = np.asarray(hdu.data[cols["lambda"].name], dtype=np.float64)
        thr = np.asarray(hdu.data[cols["throughput"].name], dtype=np.float64)
        tunit = cols["lambda"].unit
    if tunit:
        unit = _parse_unit(tunit, path, what, key="TUNIT")
        if unit is None or not unit.is_equivalent(u.AA):
            msg = f"{path}: filter {name!r}: lambda unit {tunit!r} is not a wavelength"
            raise ReduxError(msg)
        wave = wave * unit.to(u.AA)
    ok = np.isfinite(wave) & np.isfinite(thr)
    order = np.argsort(wave[ok])
    wave, thr = wave[ok][order], np.clip(thr[ok][order], 0.0, None)
    if wave.size < 2 or not np.any(thr > 0):
        msg = f"{path}: filter {name!r} has no positive throughput; check the table"
        raise ReduxError(msg)
    return wave, thr


def pivot_wavelength(wave, throughput) -> float:
    """The pivot wavelength (Å), ``sqrt(∫ T λ dλ / ∫ T / λ dλ)``.

    Examples
    --------
    >>> round(pivot_wavelength([5000.0, 6000.0], [1.0, 1.0]), 1)
    5477.2
    """
    wave = np.asarray(wave, dtype=np.float64)
    thr = np.asarray(throughput, dtype=np.float64)
    return float(np.sqrt(np.trapezoid(thr * wave, wave) / np.trapezoid(thr / wave, wave)))


def _band_weights(edges, wave, thr):
    """∫ T λ dλ over each pixel (between ``edges``), T linear between its samples."""
    grid = np.union1d(wave, edges[(edges > wave[0]) & (edges < wave[-1])])
    f = np.interp(grid, wave, thr) * grid
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(grid))])
    at_edges = np.interp(edges, grid, cum)  # constant outside the curve
    return np.diff(at_edges), float(cum[-1])


def synthetic_band(cube, wave, throughput, *, min_coverage=0.8, chunk=256) -> tuple[Image, float]:
    """The image a filter would see: photon-weighted mean f_λ of every spaxel.

    ``<f_λ> = ∫ f_λ T λ dλ / ∫ T λ dλ`` over the wavelengths the cube covers (the mean
    an instrument counting photons measures, as HST's ``PHOTFLAM`` assumes). The
    throughput is taken linear between its samples and integrated exactly over each
    cube pixel. NaN pixels of a spaxel drop out of both integrals; a spaxel whose
    finite pixels hold less than ``min_coverage`` of ``∫ T λ dλ`` is NaN.

    Parameters
    ----------
    cube : `Cube`
    wave, throughput : array_like
        The filter curve (Å), e.g. from `read_filter_curve`.
    min_coverage : float
        The smallest fraction of ``∫ T λ dλ`` the cube must cover.
    chunk : int
        Wavelength planes handled at once (memory).

    Returns
    -------
    image : `Image`
        Mean f_λ per spaxel (erg s⁻¹ cm⁻² Å⁻¹) with its error.
    coverage : float
        The fraction of ``∫ T λ dλ`` inside the cube's wavelength range.
    """
    wave = np.asarray(wave, dtype=np.float64)
    thr = np.asarray(throughput, dtype=np.float64)
    weights, total = _band_weights(cube.wave_edges, wave, thr)
    coverage = float(weights.sum() / total) if total > 0 else 0.0
    if coverage < min_coverage:
        strong = wave[thr > 0.01 * thr.max()]
        msg = (f"{cube.path}: the filter ({strong[0]:.0f}–{strong[-1]:.0f} Å) lies only "
               f"{coverage:.0%} inside the cube's {cube.wave_edges[0]:.0f}–"
               f"{cube.wave_edges[-1]:.0f} Å (min_coverage = {min_coverage:g}); choose a "
               "filter the cube covers, or lower min_coverage")
        raise ReduxError(msg)
    idx = np.flatnonzero(weights > 0)
    num = np.zeros(cube.data.shape[1:])
    den = np.zeros(cube.data.shape[1:])
    var = None if cube.var is None else np.zeros(cube.data.shape[1:])
    for start in range(0, idx.size, chunk):
        sel = idx[start:start + chunk]
        d = cube.data[sel].astype(np.float64)
        ok = np.isfinite(d)
        w = weights[sel][:, None, None] * ok
        num += (w * np.where(ok, d, 0.0)).sum(axis=0)
        den += w.sum(axis=0)
        if var is not None:
            var += (w**2 * np.where(ok, np.nan_to_num(cube.var[sel], nan=0.0), 0.0)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        good = den >= min_coverage * total
        data = np.where(good, num / den, np.nan)
        error = None if var is None else np.where(good, np.sqrt(var) / den, np.nan)
    header = _celestial_header(cube.wcs, str(FLAMBDA_UNIT))
    header["PIVOTWL"] = (pivot_wavelength(wave, thr), "[Angstrom] pivot wavelength of the filter")
    header["COVERAGE"] = (coverage, "fraction of int T lambda dlambda inside the cube")
    log.info("%s: synthetic band, pivot %.0f Å, %.1f %% of the filter inside the cube; %d of "
             "%d spaxels", cube.path, header["PIVOTWL"], 100 * coverage, int(good.sum()),
             good.size)
    return Image(data=data, error=error, wcs=cube.wcs, unit=str(FLAMBDA_UNIT), path=cube.path,
                 header=header), coverage


# ---- nebulae -----------------------------------------------------------------------------
def read_nebulae(mask_path, catalog_path=None) -> tuple[Image, Table | None]:
    """A PHANGS-style nebula mask and, optionally, its catalogue.

    Parameters
    ----------
    mask_path : str or `~pathlib.Path`
        An image of nebula ids with a celestial WCS. Ids are integers >= 0; NaN and
        negative values (PHANGS writes -1) are background.
    catalog_path : str or `~pathlib.Path`, optional
        An ECSV or FITS table with a column of the mask's ids (`ID_COLUMNS`: PHANGS'
        ``region_ID``, or ``id``). Catalogue ids missing from the mask are logged as a
        warning.

    Returns
    -------
    labels : `Image`
        ``data`` int64 ids, `BACKGROUND` (-1) outside nebulae; ``unit`` '', no error.
    catalog : `~astropy.table.Table` or None
        The catalogue as read; ``catalog.meta['id_column']`` names its id column.
    """
    path = Path(mask_path)
    what = "nebula mask"
    with _open(path, what) as hdul:
        hdu = _find_ext(hdul, None, path, what)
        raw = np.asarray(hdu.data, dtype=np.float64)
        header = hdu.header.copy()
    if raw.ndim != 2:
        msg = f"{path}: the {what} is {raw.ndim}-D; expected a 2-D image of nebula ids"
        raise ReduxError(msg)
    wcs = _celestial_wcs(header, path, what)
    fin = np.isfinite(raw)
    if np.any(raw[fin] != np.round(raw[fin])):
        msg = (f"{path}: the {what} holds non-integer values; expected nebula ids (integers "
               ">= 0, background -1 or NaN) — is it a flux map?")
        raise ReduxError(msg)
    labels = np.where(fin & (raw >= 0), raw, BACKGROUND).astype(np.int64)
    ids = np.unique(labels[labels >= 0])
    log.info("%s: %d nebulae, %d of %d pixels in a nebula", path, ids.size,
             int((labels >= 0).sum()), labels.size)
    image = Image(data=labels, error=None, wcs=wcs, unit="", path=path, header=header)
    if catalog_path is None:
        return image, None
    cpath = Path(catalog_path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", u.UnitsWarning)
            table = Table.read(cpath)
    except FileNotFoundError:
        msg = f"{cpath}: nebula catalogue not found; check the manifest's 'muse:' entry"
        raise ReduxError(msg) from None
    except Exception as exc:  # noqa: BLE001 - Table.read raises many kinds
        msg = f"{cpath}: the nebula catalogue can't be read as ECSV or FITS ({exc})"
        raise ReduxError(msg) from None
    col = next((c for c in ID_COLUMNS if c in table.colnames), None)
    if col is None:
        lower = {c.lower(): c for c in table.colnames}
        col = next((lower[c.lower()] for c in ID_COLUMNS if c.lower() in lower), None)
    if col is None:
        msg = (f"{cpath}: the nebula catalogue has no id column ({' or '.join(ID_COLUMNS[:3])}) "
               f"naming the mask's nebulae; its columns are {table.colnames}")
        raise ReduxError(msg)
    table.meta["id_column"] = col
    cat_ids = np.asarray(table[col])
    missing = np.setdiff1d(cat_ids, ids)
    if missing.size:
        log.warning("%s: %d of %d catalogue ids (%s) are not in the mask %s", cpath,
                    missing.size, cat_ids.size, ", ".join(map(str, missing[:10]))
                    + (", ..." if missing.size > 10 else ""), path.name)
    unlisted = np.setdiff1d(ids, cat_ids)
    if unlisted.size:
        log.info("%s: %d nebulae of the mask are not in the catalogue", path, unlisted.size)
    return image, table


def nebula_sums(image_data, labels, *, error=None) -> Table:
    """Sum an image nebula by nebula.

    Parameters
    ----------
    image_data : `~numpy.ndarray` or `Image`
        On the labels' grid (regrid it first).
    labels : `~numpy.ndarray` or `Image`
        Nebula ids >= 0, background < 0 (from `read_nebulae`; a float mask straight
        from the file works too, NaN being background).
    error : `~numpy.ndarray`, optional
        1-sigma error of the image (taken from an `Image` when not given).

    Returns
    -------
    `~astropy.table.Table`
        One row per id present in ``labels``: ``id``, ``npix``, ``flux`` (the sum of
        the finite pixels), ``n_bad`` (NaN pixels in the nebula) and, with an error,
        ``flux_err`` (quadrature sum over the finite pixels). ``flux`` carries the
        image's unit when it is an `Image`.
    """
    unit = None
    if isinstance(image_data, Image):
        unit = image_data.unit or None
        error = image_data.error if error is None else error
        image_data = image_data.data
    labels = labels.data if isinstance(labels, Image) else labels
    data = np.asarray(image_data, dtype=np.float64)
    labels = np.asarray(labels)
    if labels.dtype.kind == "f":  # a mask as read by fits.getdata: NaN/negative = background
        with np.errstate(invalid="ignore"):
            labels = np.where(np.isfinite(labels) & (labels >= 0), labels, BACKGROUND)
        labels = labels.astype(np.int64)
    if data.shape != labels.shape:
        msg = (f"nebula_sums: the image {data.shape} and the nebula mask {labels.shape} "
               "differ in shape; regrid the image onto the mask's grid first")
        raise ReduxError(msg)
    ids = np.unique(labels[labels >= 0])
    lab = np.where(labels >= 0, labels, -1)
    fin = np.isfinite(data)
    flux = ndimage.sum_labels(np.where(fin, data, 0.0), lab, ids)
    npix = ndimage.sum_labels(np.ones(data.shape), lab, ids).astype(np.int64)
    nbad = ndimage.sum_labels(~fin, lab, ids).astype(np.int64)
    table = Table({"id": ids, "npix": npix, "flux": flux, "n_bad": nbad})
    if unit:
        table["flux"].unit = unit
    if error is not None:
        err = np.asarray(error, dtype=np.float64)
        ok = fin & np.isfinite(err)
        table["flux_err"] = np.sqrt(ndimage.sum_labels(np.where(ok, err**2, 0.0), lab, ids))
        if unit:
            table["flux_err"].unit = unit
    return table
