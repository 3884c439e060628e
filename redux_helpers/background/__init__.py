"""The sky under the objects: masking sources, modelling the sky, a radial-profile sky.

A calibrated frame holds the light of the objects on top of the light of the sky
(airglow, moonlight, city light), ``I t = S + O``. The sky ``S`` is smooth; the objects
``O`` are not. To measure ``S`` the objects are found and masked first (`source_mask`),
then the sky is modelled from what is left (`sky_model`):

* ``'box'`` — sigma-clipped medians in boxes of ``box_size`` pixels, smoothed from box
  to box and interpolated to every pixel (photutils' `~photutils.background.Background2D`):
  follows gradients, but a box much smaller than a galaxy takes its faint outskirts for
  sky;
* ``'plane'`` — a least-squares plane ``a + b x + c y`` through the unmasked pixels:
  follows a gradient and nothing smaller;
* ``'constant'`` — one sigma-clipped median for the whole frame.

In a field that a galaxy fills, every unmasked pixel still holds a little of the
galaxy's light, and all three estimates come out too high. `radial_sky` follows the
observatory pipeline's method instead: it fits the galaxy's (elliptical) azimuthal
median profile with ``A f(r) + G``, so that the galaxy's tail is part of the model and
the constant ``G`` is the sky.

Nothing here reads or writes files.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> sky = rng.normal(100.0, 5.0, (64, 64))
>>> model, rms = sky_model(sky, method="constant")
>>> round(float(model[0, 0])), round(float(rms))
(100, 5)

Where things are
----------------
============= =====================================================================
``constants`` `METHODS`, `PROFILES`, the least sky a frame must show
``sources``   `detect`, `source_mask`
``sky``       `sky_model`, `box_medians`
``galaxy``    `elliptical_radius`, `galaxy_geometry`, `find_galaxy`, `RadialProfile`, `radial_sky`,
              `ring_profile`
``choice``    `check_radial_fit`, `check_against_masked`, `SkyChoice`, `fit_radial_from_galaxy`, `sky_for_frame`, `rate_outliers`
============= =====================================================================
"""

from .choice import (
    MAX_MASKED_DIFF,
    MAX_MASKED_ERRORS,
    MAX_OFFSET_ERROR,
    MAX_RATE_SCATTER,
    MIN_SCALE_LENGTHS,
    MIN_SIGNAL,
    SkyChoice,
    check_against_masked,
    check_radial_fit,
    fit_radial_from_galaxy,
    rate_outliers,
    scale_length,
    sky_for_frame,
)
from .constants import METHODS, MIN_SKY_FRACTION, MIN_SKY_PIXELS, PROFILES
from .galaxy import (
    RadialProfile,
    elliptical_radius,
    find_galaxy,
    galaxy_geometry,
    radial_sky,
    ring_profile,
)
from .sky import box_medians, sky_model
from .sources import detect, source_mask

__all__ = ["MAX_MASKED_DIFF", "MAX_MASKED_ERRORS", "MAX_OFFSET_ERROR", "MAX_RATE_SCATTER", "METHODS", "MIN_SCALE_LENGTHS", "MIN_SIGNAL", "MIN_SKY_FRACTION", "MIN_SKY_PIXELS", "PROFILES", "RadialProfile", "SkyChoice", "box_medians", "check_against_masked", "check_radial_fit", "detect", "elliptical_radius", "find_galaxy", "fit_radial_from_galaxy", "galaxy_geometry", "radial_sky", "rate_outliers", "ring_profile", "scale_length", "sky_for_frame", "sky_model", "source_mask"]
