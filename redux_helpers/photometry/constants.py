"""Numbers the photometry uses: magnitudes per natural log, MAD to sigma, the zero point's error floor, the detection and measurement columns."""

from __future__ import annotations

import numpy as np

#: 2.5 / ln(10): a relative flux error of e is a magnitude error of 1.0857 e.
MAG_PER_LN = 2.5 / np.log(10.0)
#: sigma of a Gaussian = 1.4826 x its median absolute deviation.
MAD_TO_SIGMA = 1.4826
#: the median of n Gaussian values scatters sqrt(pi/2) times more than their mean.
MEDIAN_EFFICIENCY = np.sqrt(np.pi / 2.0)
#: speed of light in Angstrom per second.
C_ANGSTROM = 2.99792458e18
#: magnitude floor added in quadrature to every standard star's error.
ZP_ERR_FLOOR = 0.01
#: an airmass range below this can't constrain the extinction.
MIN_AIRMASS_RANGE = 0.05

DETECT_COLUMNS = ("id", "x", "y", "peak", "sharpness", "roundness1", "roundness2",
                  "flagged", "saturated")
MEASURE_COLUMNS = ("x", "y", "flux", "flux_err", "bkg", "bkg_err", "n_annulus",
                   "n_flagged", "snr")


