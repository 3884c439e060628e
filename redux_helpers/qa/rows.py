"""The QA table's rows and thresholds, shared by every step's collector."""

from __future__ import annotations

import logging
import math

import numpy as np
from astropy.table import Table

from .. import fitsio, masters
from ..background import MAX_RATE_SCATTER

log = logging.getLogger(__name__)

FLAGS = ("info", "pass", "warn", "fail")      # in order of concern
COLUMNS = ("step", "metric", "value", "error", "unit", "flag", "reason")

# ---- thresholds (the module docstring lists them; each reason sentence states its own)
BIAS_NOISE_RANGE = (0.8, 1.25)        # measured / expected superbias noise
FLAT_NORM_TOL = 0.01                  # |median of the central half - 1|
FLAT_P2P_WARN = 3.0                   # %, pixel-to-pixel rms
FLAT_NOISE_WARN = 1.0                 # %, median UNCERT of the superflat
FLAT_OUTLIER_WARN, FLAT_OUTLIER_FAIL = 2.0, 25.0   # % of pixels < 0.5 or > 1.5
FLAT_RANGE = (0.5, 1.5)
CR_FACTOR, CR_FLOOR, CR_MAX = 5.0, 0.05, 1.0       # x expected; % ; %
MASKED_WARN = 5.0                     # % of a calibrated frame flagged
UNCERT_RANGE = (0.85, 1.2)            # sky rms / median UNCERT
POISSON_RANGE = (0.9, 1.3)            # sky rms / sqrt(sky + RN^2)
BADPIX_WARN, BADPIX_FAIL = 2.0, 10.0  # % of the chip
REG_WARN, REG_FAIL = 0.25, 1.0        # px, worst registration residual
REJECT_FAIL = 5.0                     # % of a stack's values rejected
SKY_SCATTER_FAIL = 100 * MAX_RATE_SCATTER   # % a frame's sky rate from its filter's others
MIN_DEPTH = 3                         # frames in a stack
ZP_ERR_WARN = 0.05                    # mag
K_ERR_WARN = 0.05                     # mag/airmass
MIN_STANDARDS, MAX_REJECTED = 3, 0.2
ZP_RMS_WARN = 0.05                    # mag
CONT_SCALE_REL_WARN = 0.05            # relative error of the continuum scale
ANCHOR_SLOPE_TOL, ANCHOR_MIN_BINS = 0.2, 5
NEBULA_BIAS_TOL, NEBULA_SCATTER_FACTOR = 0.05, 2.0
MAD_TO_SIGMA = 1.4826



class Rows:
    """Collects metric rows for one step."""

    def __init__(self):
        self.rows = []
        self.step = ""

    def add(self, metric, value, *, error=np.nan, unit="", flag="info", reason=""):
        if flag not in FLAGS:
            msg = f"flag must be one of {', '.join(FLAGS)}, got {flag!r}"
            raise ValueError(msg)
        self.rows.append((self.step, metric, as_float(value), as_float(error), unit, flag, reason))


def as_float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def within(value, lo, hi) -> str:
    return "pass" if lo <= value <= hi else "warn"


def fmt(x, digits=3) -> str:
    """A number for a sentence: 3 significant digits, no exponent for everyday sizes."""
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:.{digits}g}"



def inventory_of(paths) -> Table | None:
    """00's inventory with 02's gain and read noise where the headers had none."""
    return masters.read_inventory(paths, need_camera=False) if paths.inventory.is_file() else None


def table_of(paths, key) -> Table | None:
    """Product ``key``'s table, or None when the step did not make it or it has no row."""
    path = paths.product(key)
    if not path.is_file():
        return None
    tab = fitsio.read_table(path)
    return tab if len(tab) else None


def exptimes_of(paths) -> dict:
    inv = inventory_of(paths)
    if inv is None or "exptime" not in inv.colnames:
        return {}
    return {str(r["file"]): as_float(r["exptime"]) for r in inv}


