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

Where things are
----------------
============ ========================================================================
``images``   units, HDU names, `Image`, `Cube`, `LineMaps`
``reading``  `read_image`, `read_cube`, `resolution_arcsec`
``lines``    `fit_redshift`, `estimate_redshift`, `line_maps`
``bands``    `read_filter_curve`, `pivot_wavelength`, `synthetic_band`
``nebulae``  `read_nebulae`, `nebula_sums`
============ ========================================================================
"""

from .bands import pivot_wavelength, read_filter_curve, synthetic_band
from .images import (
    BACKGROUND,
    C_KMS,
    CONT_MEDIAN_AA,
    DATA_NAMES,
    FLAMBDA_UNIT,
    FLUX_UNIT,
    ID_COLUMNS,
    MIN_BAND_PIXELS,
    REST_AIR,
    REST_VACUUM,
    SIGMA_NAMES,
    VARIANCE_NAMES,
    Cube,
    Image,
    LineMaps,
    log,
)
from .lines import estimate_redshift, fit_redshift, line_maps
from .nebulae import nebula_sums, read_nebulae
from .reading import FWHM_KEYS, read_cube, read_image, resolution_arcsec

__all__ = ["BACKGROUND", "CONT_MEDIAN_AA", "C_KMS", "Cube", "DATA_NAMES", "FLAMBDA_UNIT", "FLUX_UNIT", "FWHM_KEYS", "ID_COLUMNS", "Image", "LineMaps", "MIN_BAND_PIXELS", "REST_AIR", "REST_VACUUM", "SIGMA_NAMES", "VARIANCE_NAMES", "estimate_redshift", "fit_redshift", "line_maps", "log", "nebula_sums", "pivot_wavelength", "read_cube", "read_filter_curve", "read_image", "read_nebulae", "resolution_arcsec", "synthetic_band"]
