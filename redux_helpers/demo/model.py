"""The demo night's model: what shapes it (`DemoConfig`) and its instrument and sky."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEMO_VERSION = 7


@dataclass(frozen=True)
class DemoConfig:
    """What shapes a demo night; the same config always gives the same files."""

    size: int = 1024          # trimmed image is size x size pixels
    seed: int = 1
    n_bias: int = 11
    n_dark: int = 5           # per exposure time
    n_flat: int = 7           # per filter
    n_light: int = 4          # per filter
    rotation_deg: float = 0.0  # rotation of the last light of each filter (for registration)
    broken: bool = False      # truncate one light frame (a night with a bad file, for batches)


# ---- the instrument and the sky (the truth every test checks against) ---------------
GAIN = 1.6                    # e-/ADU
READ_NOISE = 9.0              # e-
BIAS_LEVEL = 1000.0           # ADU
OVERSCAN_COLS = 32
OVERSCAN_SKIP = 4             # first overscan columns are not used (charge bleeding)
SATURATE = 65535              # ADU, the ADC's ceiling
PIXEL_SCALE = 0.4             # arcsec / pixel
CCD_TEMP = -20.0              # deg C
FILTERS = ("R", "Ha")
ZERO_POINT = {"R": 25.0, "Ha": 22.5}      # mag giving 1 e-/s above the atmosphere
EXTINCTION = {"R": 0.10, "Ha": 0.08}      # mag / airmass
SKY_RATE = {"R": 15.0, "Ha": 1.5}         # e-/s/pixel
EXPTIME = {"R": 300.0, "Ha": 600.0}       # s, science frames
STD_EXPTIME = {"R": 5.0, "Ha": 30.0}      # s, standard-star frames
DARK_EXPTIMES = (300.0, 900.0)
FLAT_EXPTIME = 5.0
CONT_SCALE = 0.08             # Ha-filter rate / R-filter rate of a continuum source
BULGE_COLOUR = 0.92           # the bulge is redder: its Ha/R ratio is this times CONT_SCALE
LINE_IN_R = 0.9               # R-filter rate / Ha-filter rate of Halpha line photons
# the filters' bandpasses (the manifest's `bandpasses`): the zero points are AB magnitudes,
# so 1 e-/s in the Ha filter is f_lambda = 10**(-0.4 (ZP + 48.6)) c / pivot^2, and a line
# inside the filter's effective width gives that times the width
BANDPASSES = {"R": {"pivot_A": 6400.0, "width_A": 1500.0},
              "Ha": {"pivot_A": 6563.0, "width_A": 75.0}}
HALPHA_CGS_PER_RATE = (10 ** (-0.4 * (ZERO_POINT["Ha"] + 48.6)) * 2.99792458e18
                       / BANDPASSES["Ha"]["pivot_A"] ** 2 * BANDPASSES["Ha"]["width_A"])
# = 1.895e-16 erg/s/cm^2 of Halpha line per e-/s in the Ha filter
GALAXY = {"ra": 245.4537, "dec": -2.2831, "pa_deg": 58.0, "inclination_deg": 55.0,
          "distance_mpc": 22.5}
STD_FIELD = {"ra": 314.25, "dec": 0.35}
STD_AIRMASSES = (1.1, 1.6, 2.2)


def default_root() -> Path:
    """Where the demo of the repository's manifest lives (git ignores it)."""
    return Path(__file__).resolve().parents[2] / "demo_data" / "demo"


