"""From an Hα and a continuum stack to a catalogue of HII regions.

The steps, in the order a notebook runs them:

0. `choose_mode`: an Hα line image from an Hα and a continuum stack, or knots in one
   image; `read_image` each image with an uncertainty; `check_same_grid`.

1. (The continuum scale, how bright a pure continuum source is in the Hα filter
   compared with the broad band (R), is `redux_helpers.continuum_scale`'s.)
2. `subtract_continuum`: the pure line image, ``(Hα - s R) / (1 - s q)``, with its
   uncertainty; the ``1 - s q`` puts back the line light that the broad band also
   contains and that ``s R`` took away.
   For the search that follows (with `photometry.uncertainty_from_sky` for images made
   elsewhere and `photometry.seeing_fwhm` for the stars' FWHM): `saturated_cores`, `star_radii`, `residual_radius` and `discs` (what to leave out
   of the search: the residuals of stars, saturated ones included, and of a nucleus),
   `light_centre` and `galaxy_extent` (a galaxy's centre and extent from its light).
3. The galaxy's geometry: `north_angle`, `galaxy_frame` (deprojected galactocentric
   radius of any pixel), `deproject_image` (the galaxy seen face on) and `check_galaxy`
   (the manifest's galaxy against the image).
4. `find_regions`: segmentation of the line image (photutils) and photometry of each
   region; `region_sums` adds up another image (the continuum) in the same apertures.
5. `catalogue`: sky positions, galactocentric radii, sizes in pc, fluxes in
   erg s⁻¹ cm⁻², luminosities; `ds9_regions` and `bubble_charts` to look at it
   (the notebook writes them).

All images share one pixel grid (aligned stacks), are in electron/s, background
subtracted, with 1-sigma uncertainty images and bitmasks (`redux_helpers.masks`;
``mask > 0`` is flagged). Pixel positions are 0-based, as numpy and photutils count.

Angles: a position angle (PA) is measured on the sky from north through east; the
inclination is 0 for a face-on disk. The WCS says where north and east are on the
pixel grid; without one, north is taken as +y and east as -x (the demo's convention).

Where things are
----------------
============== ====================================================================
``constants``  FWHM/sigma, deblending and Kron settings, unit conversions
``inputs``     `choose_mode` (line or knots), `read_image`, `check_same_grid`
``line_image`` `subtract_continuum`
``residuals``  galaxy extent, saturated cores, star radii and residuals, the light centre
``geometry``   `north_angle`, `galaxy_frame`, `Deprojection`, `deproject_image`, `check_galaxy`
``detect``     `radial_residual`, `find_regions`, `region_sums`
``catalogue``  `catalogue`, `lf_slope`
``charts``     `ds9_regions`, `bubble_charts` (in memory)
============== ====================================================================
"""

from .catalogue import catalogue, lf_slope
from .charts import bubble_charts, ds9_regions
from .constants import DEBLEND, EDGE_ON_DEG, FWHM_TO_SIGMA, KRON_PARAMS
from .detect import REGION_COLUMNS, find_regions, radial_residual, region_sums
from .geometry import Deprojection, check_galaxy, deproject_image, galaxy_frame, north_angle
from .inputs import Image, check_same_grid, choose_mode, read_image
from .line_image import subtract_continuum
from .residuals import (
    discs,
    galaxy_extent,
    light_centre,
    residual_radius,
    saturated_cores,
    star_radii,
)

__all__ = ["DEBLEND", "Deprojection", "EDGE_ON_DEG", "FWHM_TO_SIGMA", "Image", "KRON_PARAMS", "REGION_COLUMNS", "bubble_charts", "catalogue", "check_galaxy", "check_same_grid", "choose_mode", "deproject_image", "discs", "ds9_regions", "find_regions", "galaxy_extent", "galaxy_frame", "lf_slope", "light_centre", "north_angle", "radial_residual", "read_image", "region_sums", "residual_radius", "saturated_cores", "star_radii", "subtract_continuum"]
