"""The demo night: a deterministic synthetic night of raw frames, with its truth.

Everything a real night contains is here, made from a known model so that every step
of the chain can be checked against the right answer:

* bias frames with a level that drifts from frame to frame, a row structure common to
  the overscan and the image, a fixed 2-D pattern, read noise and an overscan strip
  (``BIASSEC``/``TRIMSEC``);
* darks at two exposure times with dark current, an amplifier glow and hot pixels;
* dome flats in R and Hα at different levels, with vignetting, dust donuts,
  pixel-to-pixel sensitivity and dead columns;
* light frames of a spiral galaxy with HII regions in both filters, dithered by
  non-integer offsets, with field stars of known magnitude (a few saturated), sky,
  atmospheric extinction and cosmic rays;
* standard-star frames at three airmasses per filter, with their catalogue.

Raw pixels are written as cameras write them: 16-bit unsigned integers (``BITPIX=16``,
``BZERO=32768``). The truth is written beside the raw folder::

    <root>/raw/*.fits             the night, as a telescope would give it
    <root>/standards.ecsv         the standard stars' catalogue (name, ra, dec, R, Ha)
    <root>/truth/truth.json       constants and per-frame facts
    <root>/hst/, <root>/muse/     HST-like and MUSE-like images of the galaxy (`demo_muse`)
    <root>/truth/*.fits, *.ecsv   bias pattern, dark current, flats, scenes, stars,
                                  HII regions, per-frame noiseless images and CR masks

Count rates are in electrons per second; magnitudes follow
``m = ZP - 2.5 log10(rate) - k X`` for a star of catalogue magnitude ``m`` observed at
airmass ``X``; i.e. the rate at the telescope is ``10**(-0.4 (m - ZP + k X))``.

Where things are: `model` (`DemoConfig`, the instrument and sky constants), `scene` (the
galaxy, stars and chip, `Night`), `night` (`make_demo`, `ensure_demo`: the files),
`space` (the HST-like and MUSE-like images), `truth` (`Truth`, reading it back).
"""

from .model import *  # noqa: F403 - the constants every test checks against
from .model import DemoConfig, default_root
from .night import ensure_demo, is_current, make_demo
from .scene import Night, gauss_stamps, make_wcs
from .truth import Truth

__all__ = ["DemoConfig", "Night", "Truth", "default_root", "ensure_demo", "gauss_stamps",
           "is_current", "make_demo", "make_wcs"]
