"""The units and names MUSE files use, and the containers the readers return: `Image`, `Cube`, `LineMaps`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS

from .. import skywcs

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


@dataclass
class Image:
    """A 2-D image on a celestial grid.

    Attributes
    ----------
    data : `~numpy.ndarray`
        The image, float64 in ``unit`` (a nebula mask from `read_nebulae`: int64 labels).
    uncertainty : `~numpy.ndarray` or None
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
    uncertainty: np.ndarray | None
    wcs: WCS
    unit: str
    path: Path | None
    header: fits.Header = field(repr=False)

    @property
    def pixel_scale_arcsec(self) -> float:
        """Side of a pixel on the sky (arcsec), the square root of its area (`skywcs`)."""
        return skywcs.pixel_scale_arcsec(self.wcs)

    @property
    def pixel_area_arcsec2(self) -> float:
        """Area of a pixel on the sky (arcsec²)."""
        return skywcs.pixel_area_arcsec2(self.wcs)


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


def _edges(wave) -> np.ndarray:
    """Pixel edges halfway between pixel centres, extrapolated at both ends."""
    wave = np.asarray(wave, dtype=np.float64)
    mid = 0.5 * (wave[1:] + wave[:-1])
    return np.concatenate([[2 * wave[0] - mid[0]], mid, [2 * wave[-1] - mid[-1]]])


