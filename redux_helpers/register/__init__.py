"""Registration: where every pixel of a frame falls on the reference frame's grid.

Frames of one target are never taken at exactly the same place: the telescope is
dithered on purpose, drifts, and a camera may be rotated between nights. Registration
finds, for each frame, the transform ``q = A p + t`` that takes a pixel position ``p``
of the frame to ``q`` on the reference grid — from the stars both frames see:

1. stars are detected and centred in both frames (`find_stars`);
2. the pattern of the brightest stars is matched between the frames (triangles of
   stars are the same shape whatever the shift, rotation and scale; astroalign's
   asterism matching), which also gives which star is which;
3. a similarity transform (shift, rotation, scale) is fitted by least squares to all
   matched stars, with outliers rejected, and its residual reported.

When the fitted rotation and scale are indistinguishable from none, the transform is
reported as a pure translation. When both frames have a celestial WCS, it gives the
first guess and the stars refine it (`register_frame`). A frame without a usable star
pattern (faint, trailed or crowded stars) falls back to cross-correlating the two
frames' sources (`register_xcorr`: hot pixels, read-out banding and the sky are removed
first, so that what stays fixed on the detector does not pull the shift to zero), which
measures a pure shift to a small fraction of a pixel. A frame that none of these can
place (blank, clouded, another field) raises `RegistrationError` saying why.

Where things are
----------------
============= =====================================================================
``transform`` `Transform`, `RegistrationError`, `overlap_fraction`
``matching``  `fit_similarity`, `match_stars`, `transform_from_pairs`, `refine`, `register_stars`, `register_frame`, `register_wcs`
``xcorr``     `correlation_image`, `register_xcorr`
============= =====================================================================

The stars it uses are found by `redux_helpers.stars` (`find_stars`, `refine_centroids`,
`point_like_sources`, `despiked`, ...: the suite's one star finder), re-exported here.
"""

from ..stars import (
    despiked,
    find_stars,
    half_light_radii,
    minus_local_background,
    point_like_sources,
    refine_centroids,
)
from .matching import (
    fit_similarity,
    match_stars,
    refine,
    register_frame,
    register_stars,
    register_wcs,
    transform_from_pairs,
)
from .transform import MAD_TO_SIGMA, RegistrationError, Transform, overlap_fraction
from .xcorr import correlation_image, register_xcorr

__all__ = ["MAD_TO_SIGMA", "RegistrationError", "Transform", "correlation_image", "despiked", "find_stars", "fit_similarity", "half_light_radii", "match_stars", "minus_local_background", "overlap_fraction", "point_like_sources", "refine", "refine_centroids", "register_frame", "register_stars", "register_wcs", "register_xcorr", "transform_from_pairs"]
