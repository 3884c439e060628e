"""Aperture photometry of stars and the standard-star calibration.

From a calibrated, background-subtracted frame in electrons per second to calibrated
magnitudes and fluxes:

1. stars are detected and centred (`detect_stars`), each flagged when a masked pixel
   or a saturated one lies within one FWHM of its centre;
2. their light is summed in a circle, less a local background measured in an annulus
   around each (`measure`); the frame's sky was removed already, but a star on a
   galaxy or in a wing of a bright neighbour sits on light that a global sky model
   does not hold;
3. a small aperture gives the best signal-to-noise for faint stars but misses the
   wings of the PSF; the fraction it misses is the same for every star of a frame and
   is measured on bright, isolated ones (`curve_of_growth`, `aperture_correction`);
4. instrumental magnitudes (`instrumental_mag`) of standard stars, paired with their
   catalogue (`match_catalog`), give the zero point and the extinction
   (`fit_zero_point`, ``m_cat - m_inst = ZP - k X (+ c colour)``);
5. a zero point on the AB system converts a count rate into a flux density
   (`photflam`) or, for an emission line inside a narrow-band filter, into a line
   flux (`line_flux_per_rate`).

Pixel positions are 0-based (numpy's and photutils' convention, not FITS').
Flagged pixels are never filled in silently: a star with a flagged pixel inside its
aperture gets a NaN flux and a count of those pixels, and the caller decides.

Where things are
----------------
============== ====================================================================
``constants``  magnitudes, MAD to sigma, error floors, table columns
``detect``     `detect_stars`
``aperture``   `local_background`, `measure`
``correction`` `point_like`, `source_kinds`, `filled_cores`, `curve_of_growth`, `aperture_correction`,
               `apcorr_stars`, `gaussian_apcorr`, `image_aperture_correction`, `instrumental_mag`
``zeropoint``  `match_catalog`, `ZeroPointFit`, `fit_zero_point`
``units``      `rate_image`, `photflam`, `line_flux_per_rate`
``sky_noise``  `uncertainty_from_sky`
``seeing``     `seeing_fwhm`, `fit_fwhms`
============== ====================================================================
"""

from .aperture import local_background, measure
from .constants import (
    C_ANGSTROM,
    DETECT_COLUMNS,
    MAD_TO_SIGMA,
    MAG_PER_LN,
    MEASURE_COLUMNS,
    MEDIAN_EFFICIENCY,
    MIN_AIRMASS_RANGE,
    ZP_ERR_FLOOR,
)
from .correction import (
    apcorr_stars,
    aperture_correction,
    curve_of_growth,
    filled_cores,
    gaussian_apcorr,
    image_aperture_correction,
    instrumental_mag,
    point_like,
    source_kinds,
)
from .detect import detect_stars
from .seeing import fit_fwhms, seeing_fwhm
from .sky_noise import uncertainty_from_sky
from .units import line_flux_per_rate, photflam, rate_image
from .zeropoint import ZeroPointFit, fit_zero_point, match_catalog

__all__ = ["C_ANGSTROM", "DETECT_COLUMNS", "MAD_TO_SIGMA", "MAG_PER_LN", "MEASURE_COLUMNS", "MEDIAN_EFFICIENCY", "MIN_AIRMASS_RANGE", "ZP_ERR_FLOOR", "ZeroPointFit", "apcorr_stars", "aperture_correction", "curve_of_growth", "detect_stars", "filled_cores", "fit_fwhms", "fit_zero_point", "gaussian_apcorr", "image_aperture_correction", "instrumental_mag", "line_flux_per_rate", "local_background", "match_catalog", "measure", "photflam", "point_like", "rate_image", "seeing_fwhm", "source_kinds", "uncertainty_from_sky"]
