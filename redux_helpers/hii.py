"""From an Hα and a continuum stack to a catalogue of HII regions.

The steps, in the order a notebook runs them:

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
   erg s⁻¹ cm⁻², luminosities; `write_ds9` and `bubble_charts` to look at it.

All images share one pixel grid (aligned stacks), are in electron/s, background
subtracted, with 1-sigma uncertainty images and bitmasks (`redux_helpers.masks`;
``mask > 0`` is flagged). Pixel positions are 0-based, as numpy and photutils count.

Angles: a position angle (PA) is measured on the sky from north through east; the
inclination is 0 for a face-on disk. The WCS says where north and east are on the
pixel grid; without one, north is taken as +y and east as -x (the demo's convention).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.stats import sigma_clipped_stats
from astropy.table import Table
from scipy import ndimage

from .errors import ReduxError
from .fitsio import atomic_path

log = logging.getLogger(__name__)

#: Gaussian sigma per FWHM.
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
#: Inclinations at or above this (deg) are refused by `deproject_image`.
EDGE_ON_DEG = 89.0
#: Kron aperture of the region fluxes: (scale k, minimum unscaled Kron radius in pixels),
#: photutils' (and SExtractor's) defaults. For a Gaussian the aperture is 3.1 sigma and
#: holds 99.3 % of the flux.
KRON_PARAMS = (2.5, 1.4)
#: Deblending: 32 thresholds spaced by 'sinh' (the default 'exponential' spacing
#: left a bright/faint pair 9 px apart merged in 3 of 30 test fields), contrast 0.001.
DEBLEND = {"n_levels": 32, "contrast": 0.001, "mode": "sinh"}
#: Small-sample correction of the normal-consistent MAD (1.4826 MAD) for n < 10, from a
#: Monte Carlo of 4e5 normal samples per n (agrees with Croux & Rousseeuw 1992 to 1 %);
#: for n >= 10 their approximation n / (n - 0.8) is used.
_RAD_PER_ARCSEC = math.pi / (180.0 * 3600.0)
_CM_PER_MPC = (1.0 * u.Mpc).to_value(u.cm)


# ---- 2. the line image -----------------------------------------------------------------
def subtract_continuum(ha, ha_unc, r, r_unc, scale, *, scale_err=0.0, line_in_continuum=0.0):
    """The pure Hα line image, in the Hα filter's e-/s, and its uncertainty.

    ``Hα - s R`` removes the continuum, but the broad band R also receives the line
    (its rate there is ``q`` times its rate in the Hα filter), so ``s R`` also
    removes a fraction ``s q`` of the line; dividing by ``1 - s q`` puts it back.

    Parameters
    ----------
    ha, ha_unc, r, r_unc : array_like
        The aligned Hα and R stacks (e-/s, background subtracted) and their 1-sigma
        uncertainties.
    scale : float
        ``s`` from `redux_helpers.continuum_scale`.
    scale_err : float
        Its 1-sigma error. It is added per pixel as ``|∂line/∂s| σ_s`` with
        ``∂line/∂s = (q Hα - R) / (1 - s q)²``. This error is the *same* draw in every
        pixel: summing ``line_unc²`` over a region treats it as independent and so
        underestimates it. For region fluxes use ``scale_err=0`` here and add
        ``σ_s (F_R - q F_Hα) / (1 - s q)²`` (the region's fluxes in the two stacks)
        to each flux error separately.
    line_in_continuum : float
        ``q`` = (rate of the line in the R filter) / (its rate in the Hα filter),
        from the two filters' transmission at the galaxy's redshifted Hα and their
        zero points; 0 ignores the line in R.

    Returns
    -------
    line, line_unc : ndarray (float64)
        NaN where any input is NaN.
    """
    s, q, ds = float(scale), float(line_in_continuum), float(scale_err)
    if not (np.isfinite(s) and s > 0):
        msg = f"the continuum scale must be a positive number; got {scale!r}"
        raise ReduxError(msg)
    if not (np.isfinite(ds) and ds >= 0):
        msg = f"scale_err must be zero or positive; got {scale_err!r}"
        raise ReduxError(msg)
    denom = 1.0 - s * q
    if not (np.isfinite(q) and q >= 0 and denom > 0):
        msg = (f"line_in_continuum = {line_in_continuum!r} with scale {s:g} gives "
               f"1 - s q = {denom:g}; q must be >= 0 and s q < 1 (q is the line's rate in "
               "the broad band over its rate in the Hα filter, typically 0.5-1.5)")
        raise ReduxError(msg)
    ha, ha_unc, r, r_unc = (np.asarray(a, dtype=np.float64) for a in (ha, ha_unc, r, r_unc))
    _same_shape(ha=ha, ha_unc=ha_unc, r=r, r_unc=r_unc)
    line = (ha - s * r) / denom
    var = ha_unc ** 2 + (s * r_unc) ** 2 + (ds * (r - q * ha) / denom) ** 2
    line_unc = np.sqrt(var) / denom
    bad = ~(np.isfinite(line) & np.isfinite(line_unc))
    line[bad] = np.nan
    line_unc[bad] = np.nan
    return line, line_unc


def _same_shape(**arrays):
    shapes = {k: np.shape(v) for k, v in arrays.items() if v is not None}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{k} {s}" for k, s in shapes.items())
        msg = f"images must share one pixel grid (align the stacks first); got {listed}"
        raise ReduxError(msg)


# ---- 2b. images without an uncertainty, the seeing, what is left of the stars ------------
def galaxy_extent(image, x0, y0, *, sky_rms, smooth=10.0, nsigma=3.0, bad=None):
    """The galaxy's pixels: its light, smoothed, above the sky's noise and joined to its centre.

    ``image`` (sky subtracted) is smoothed by a Gaussian of ``smooth`` pixels, which
    turns the noise of one pixel ``sky_rms`` into ``sky_rms / (2 sqrt(pi) smooth)``;
    pixels more than ``nsigma`` times that above zero, connected to the centre
    (x0, y0), holes filled, are the galaxy. Stars make islands of their own, left
    out unless they touch the galaxy. Flagged and NaN pixels count as zero.

    Returns
    -------
    ndarray of bool, or None
        None when the centre itself is not above the threshold.
    """
    image = np.asarray(image, dtype=np.float64)
    dead = ~np.isfinite(image)
    if bad is not None:
        dead |= np.asarray(bad, bool)
    smoothed = ndimage.gaussian_filter(np.where(dead, 0.0, image), float(smooth), mode="constant")
    level = float(nsigma) * float(sky_rms) / (2.0 * math.sqrt(math.pi) * float(smooth))
    above = smoothed > level
    labels, _ = ndimage.label(above)
    ny, nx = image.shape
    iy, ix = int(round(min(max(y0, 0), ny - 1))), int(round(min(max(x0, 0), nx - 1)))
    if labels[iy, ix] == 0:
        return None
    return ndimage.binary_fill_holes(labels == labels[iy, ix])


def saturated_cores(bad, image, *, min_level, min_area=2, max_area=2000):
    """Blobs of flagged pixels inside the image and surrounded by light: saturated stars.

    A star bright enough to saturate leaves a hole in a stack (its core is NaN or
    flagged), so a star finder misses it, but its wings are still there and a
    continuum subtraction leaves a residual of them. A blob is kept when it does not
    touch the edge of the image (a no-data border does), has ``min_area`` to
    ``max_area`` pixels, and the median of ``image`` in a 2-pixel ring around it is
    above ``min_level`` (a star's wing, not empty sky).

    Returns
    -------
    x, y : ndarray
        Centre of each blob (0-based pixels).
    area : ndarray
        Its number of pixels.
    edge : ndarray
        The median of ``image`` in the ring: the star's light at the hole's edge.
    """
    bad = np.asarray(bad, bool)
    image = np.asarray(image, dtype=np.float64)
    labels, _ = ndimage.label(bad)
    xs, ys, areas, edges = [], [], [], []
    ny, nx = bad.shape
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        (y0, y1), (x0, x1) = (sl[0].start, sl[0].stop), (sl[1].start, sl[1].stop)
        if y0 == 0 or x0 == 0 or y1 == ny or x1 == nx:
            continue
        blob = labels[sl] == i
        area = int(blob.sum())
        if not min_area <= area <= max_area:
            continue
        pad = (slice(max(y0 - 3, 0), min(y1 + 3, ny)), slice(max(x0 - 3, 0), min(x1 + 3, nx)))
        here = labels[pad] == i
        ring = ndimage.binary_dilation(here, iterations=2) & ~here & ~bad[pad]
        values = image[pad][ring]
        values = values[np.isfinite(values)]
        if not values.size or np.median(values) <= min_level:
            continue
        cy, cx = ndimage.center_of_mass(here)
        xs.append(cx + pad[1].start)
        ys.append(cy + pad[0].start)
        areas.append(area)
        edges.append(float(np.median(values)))
    return np.array(xs, float), np.array(ys, float), np.array(areas, int), np.array(edges, float)


def star_radii(peak, level, *, fwhm, core=0.0, pad=3.0):
    """Radius around each star out to which its residual stays above ``level``, plus ``pad``.

    A star whose colour differs from the average star's by a fraction ``f`` leaves
    ``f s R / (1 - s q)`` of itself in the line image (see `subtract_continuum`). Its
    light falls off as the PSF, taken here as a Gaussian of the measured ``fwhm``, so
    the residual of peak ``P`` stays above the line image's noise ``n`` out to

        r = sqrt(core² + 2 σ² ln(P / n)),   σ = fwhm / 2.3548,

    where ``core`` is the radius at which ``P`` was measured: 0 for a star measured
    whole (``P`` = flux / (2 π σ²)), the radius of the hole for a saturated star (``P``
    the light at the hole's edge, see `saturated_cores`). ``pad`` pixels are added for
    the wings a real PSF has and a Gaussian does not; a star whose residual is below
    ``level`` everywhere still gets ``core + pad``.

    Parameters
    ----------
    peak, level : array_like
        Peak residual and the noise it is compared with (one unit, e.g. e-/s per pixel
        of the line image); NaN peaks give NaN radii, a peak at or below ``level``
        (or negative: a faint star's noisy flux) ``core + pad``.
    fwhm : float
        Seeing in pixels.
    core, pad : float or array_like
        Pixels.

    Returns
    -------
    ndarray
    """
    peak = np.atleast_1d(np.asarray(peak, float))
    level = np.broadcast_to(np.asarray(level, float), peak.shape)
    core = np.broadcast_to(np.asarray(core, float), peak.shape)
    sigma = float(fwhm) * FWHM_TO_SIGMA
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(level > 0, peak / level, np.inf)
        log_ratio = np.where(ratio > 1.0, np.log(ratio), 0.0)
    r2 = core ** 2 + 2.0 * sigma ** 2 * log_ratio
    r2[~np.isfinite(peak)] = np.nan
    return np.sqrt(r2) + pad


def residual_radius(line, line_unc, x, y, *, r_max, bad=None):
    """How far from (x, y) a residual in ``line`` stays above the noise, measured on it.

    The median of ``|line|`` in rings one pixel wide around (x, y) is compared with
    the median of ``line_unc`` in the same ring (for pure noise the first is 0.67 times
    the second); the radius is the first ring where it falls below. For what no model
    predicts: the residual of a galaxy's nucleus, whose colour is not the stars', or
    whose light a smooth model could not follow. Returns ``r_max`` when the residual
    never falls below the noise within it, 0 when the centre ring already is noise.
    """
    line = np.asarray(line, dtype=np.float64)
    unc = np.asarray(line_unc, dtype=np.float64)
    ok = np.isfinite(line) & np.isfinite(unc)
    if bad is not None:
        ok &= ~np.asarray(bad, bool)
    ny, nx = line.shape
    half = int(math.ceil(r_max)) + 1
    x0, x1 = max(int(round(x)) - half, 0), min(int(round(x)) + half + 1, nx)
    y0, y1 = max(int(round(y)) - half, 0), min(int(round(y)) + half + 1, ny)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    ring_of = np.floor(np.hypot(xx - x, yy - y)).astype(int)
    cut, err, good = np.abs(line[y0:y1, x0:x1]), unc[y0:y1, x0:x1], ok[y0:y1, x0:x1]
    for ring in range(int(math.ceil(r_max)) + 1):
        sel = good & (ring_of == ring)
        if sel.any() and np.median(cut[sel]) < np.median(err[sel]):
            return float(ring)
    return float(r_max)


def discs(shape, x, y, radii):
    """Boolean image: True within ``radii`` of any (x, y)."""
    out = np.zeros(shape, bool)
    ny, nx = shape
    for cx, cy, rad in zip(np.atleast_1d(x), np.atleast_1d(y), np.atleast_1d(radii), strict=True):
        if not np.isfinite(rad) or rad <= 0:
            continue
        x0, x1 = max(int(math.floor(cx - rad)), 0), min(int(math.ceil(cx + rad)) + 1, nx)
        y0, y1 = max(int(math.floor(cy - rad)), 0), min(int(math.ceil(cy + rad)) + 1, ny)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        out[y0:y1, x0:x1] |= np.hypot(xx - cx, yy - cy) <= rad
    return out


def light_centre(image, bad=None, *, smooth=10.0):
    """(x, y) of the brightest point of ``image`` smoothed by a Gaussian of ``smooth`` px.

    The centre of a galaxy whose manifest gives no position (or whose image has no
    WCS): smoothing over ~10 px makes the galaxy's bulge win over stars and knots.
    Flagged and NaN pixels count as zero.
    """
    image = np.asarray(image, dtype=np.float64)
    dead = ~np.isfinite(image)
    if bad is not None:
        dead |= np.asarray(bad, bool)
    smooth_img = ndimage.gaussian_filter(np.where(dead, 0.0, image), float(smooth),
                                         mode="constant")
    y, x = np.unravel_index(int(np.argmax(smooth_img)), smooth_img.shape)
    return float(x), float(y)


# ---- 3. the galaxy's geometry -----------------------------------------------------------
def _celestial(wcs):
    w = wcs.celestial if hasattr(wcs, "celestial") else wcs
    if not getattr(w, "has_celestial", False) or w.pixel_n_dim != 2:
        msg = "the WCS has no celestial (RA/Dec) axes; give wcs=None for north up, east left"
        raise ReduxError(msg)
    return w


def _world(w, x, y):
    """(lon, lat) in degrees of pixels, whatever the WCS's axis order."""
    values = w.pixel_to_world_values(x, y)
    return np.asarray(values[w.wcs.lng], float), np.asarray(values[w.wcs.lat], float)


def _pixel(w, lon, lat):
    """Pixel (x, y) of sky points (degrees), whatever the WCS's axis order."""
    args = [None, None]
    args[w.wcs.lng], args[w.wcs.lat] = lon, lat
    x, y = w.world_to_pixel_values(*args)
    return np.asarray(x, float), np.asarray(y, float)


def _tangent_plane(lon0, lat0, lon, lat):
    """Gnomonic (east, north) offsets in radians of points from (lon0, lat0), in degrees.

    Differences are taken in degrees before the trigonometry, so that offsets of a
    few pixels keep their precision at RA ~ 245 deg.
    """
    dl = np.asarray(lon, float) - lon0
    dl = np.where(dl > 180.0, dl - 360.0, np.where(dl < -180.0, dl + 360.0, dl))
    dl, dlat = np.deg2rad(dl), np.deg2rad(np.asarray(lat, float) - lat0)
    b0, b = np.deg2rad(lat0), np.deg2rad(lat)
    cosc = np.sin(b0) * np.sin(b) + np.cos(b0) * np.cos(b) * np.cos(dl)
    east = np.cos(b) * np.sin(dl) / cosc
    north = (np.sin(dlat) + np.sin(b0) * np.cos(b) * 2.0 * np.sin(dl / 2.0) ** 2) / cosc
    return east, north


def _sky_axes(wcs, x, y, step=100.0):
    """Local map from pixel offsets to (east, north) offsets, and the pixel scale.

    Returns ``A`` (2 x 2) such that ``(east, north) = A @ (dx, dy)`` in units of the
    pixel size, and the pixel size in degrees (``sqrt |det J|`` of the Jacobian,
    None without a WCS). ``A`` is a rotation (det +1: east to the right of north,
    a mirrored image) or a rotation times a flip (det -1: the sky as seen, east left
    of north). Derived by central differences over ``step`` pixels in the tangent
    plane at (x, y): exact for a TAN WCS whatever the step, and an average over
    ``±step`` for a distorted one.
    """
    if wcs is None:
        return np.array([[-1.0, 0.0], [0.0, 1.0]]), None
    w = _celestial(wcs)
    px = float(x) + step * np.array([0.0, 1.0, -1.0, 0.0, 0.0])
    py = float(y) + step * np.array([0.0, 0.0, 0.0, 1.0, -1.0])
    lon, lat = _world(w, px, py)
    if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
        msg = f"the WCS gives no sky position near pixel ({x:.1f}, {y:.1f})"
        raise ReduxError(msg)
    east, north = _tangent_plane(lon[0], lat[0], lon, lat)
    jac = np.array([[east[1] - east[2], east[3] - east[4]],
                    [north[1] - north[2], north[3] - north[4]]]) / (2.0 * step)
    scale = math.sqrt(abs(np.linalg.det(jac)))
    return jac / scale, math.degrees(scale)


def north_angle(wcs, x, y) -> tuple[float, bool]:
    """Where north points on the pixel grid at (x, y), and the image's parity.

    Returns
    -------
    angle : float
        Degrees, counter-clockwise from +y to north (0 = north up; 90 = north
        pointing to -x).
    east_left : bool
        True when east is 90° counter-clockwise from north (to the left when north is
        up): the sky as seen from the ground. False for a mirrored image.
    """
    a, _ = _sky_axes(wcs, x, y)
    nx, ny = np.linalg.solve(a, [0.0, 1.0])
    return float(np.degrees(np.arctan2(-nx, ny))), bool(np.linalg.det(a) < 0)


def _check_angles(pa_deg, inc_deg):
    pa, inc = float(pa_deg), float(inc_deg)
    if not np.isfinite(pa):
        msg = f"the galaxy's position angle must be a number (deg east of north); got {pa_deg!r}"
        raise ReduxError(msg)
    if not (np.isfinite(inc) and 0.0 <= inc < 90.0):
        msg = f"inclination_deg must be in [0, 90) (0 = face on); got {inc_deg!r}"
        raise ReduxError(msg)
    return math.radians(pa), math.radians(inc)


def galaxy_frame(x, y, x0, y0, pa_deg, inc_deg, *, wcs=None):
    """Coordinates in the galaxy's disk of pixels (x, y): (u, v, r), in pixels.

    ``u`` runs along the major axis towards the position angle, ``v`` along the minor
    axis towards PA - 90° on the sky, stretched by ``1 / cos(i)`` to undo the
    inclination; ``r = hypot(u, v)`` is the deprojected galactocentric radius in
    pixels (in the disk's plane, at the image's pixel scale). With ``wcs=None``
    north is +y and east is -x, and this is the demo's formula
    ``u = -sin(pa) dx + cos(pa) dy``, ``v = (cos(pa) dx + sin(pa) dy) / cos(i)``.
    With a WCS, north and east are taken at the centre (x0, y0): the galaxy is
    assumed small enough for one local frame, and pixels square.
    """
    pa, inc = _check_angles(pa_deg, inc_deg)
    a, _ = _sky_axes(wcs, x0, y0)
    dx, dy = np.asarray(x, float) - x0, np.asarray(y, float) - y0
    east = a[0, 0] * dx + a[0, 1] * dy
    north = a[1, 0] * dx + a[1, 1] * dy
    sp, cp = math.sin(pa), math.cos(pa)
    u_ = sp * east + cp * north
    v_ = (-cp * east + sp * north) / math.cos(inc)
    return u_, v_, np.hypot(u_, v_)


@dataclass(frozen=True, eq=False)
class Deprojection:
    """How `deproject_image` mapped the image: output (X, Y) = centre + (v, u).

    +Y points along the major axis towards the PA, +X towards PA - 90° on the sky
    (west for PA 0): east is to the left of the major axis, as the sky is seen,
    whatever the input image's parity.

    ``matrix`` and ``offset`` are scipy's: input (row, col) =
    ``matrix @ (Y, X) + offset``. ``centre`` is the output pixel (X, Y) of the galaxy
    centre; output pixels have the input's pixel size along both axes of the disk.
    """

    matrix: np.ndarray
    offset: np.ndarray
    shape: tuple
    centre: tuple
    x0: float
    y0: float
    pa_deg: float
    inc_deg: float
    wcs: object = None

    def to_input(self, X, Y):
        """Input pixel (x, y) of output pixels (X, Y)."""
        X, Y = np.asarray(X, float), np.asarray(Y, float)
        m, o = self.matrix, self.offset
        return m[1, 0] * Y + m[1, 1] * X + o[1], m[0, 0] * Y + m[0, 1] * X + o[0]

    def to_output(self, x, y):
        """Output pixel (X, Y) of input pixels (x, y)."""
        u_, v_, _ = galaxy_frame(x, y, self.x0, self.y0, self.pa_deg, self.inc_deg,
                                 wcs=self.wcs)
        return self.centre[0] + v_, self.centre[1] + u_


def deproject_image(image, x0, y0, pa_deg, inc_deg, *, wcs=None, order=1, shape=None):
    """The galaxy seen face on: major axis up (+Y), minor axis stretched by 1 / cos(i).

    The classic "orientation correction and resizing": a rotation that puts the
    major axis (towards PA) along +Y, and a stretch of the minor axis that makes a
    circular disk look round again. Output pixels have the input's pixel size along
    the major axis, and along the minor axis *in the disk's plane*. Values are
    interpolated, not redistributed: each output pixel keeps the *surface brightness*
    (e-/s per input pixel) of the disk at that point, so the image's sum grows by
    ``1 / cos(i)``; multiply sums by ``cos(i)`` to get fluxes back.

    Parameters
    ----------
    image : 2-D array
        NaN pixels stay NaN (and blank their interpolation neighbours).
    x0, y0 : float
        The galaxy centre (0-based pixels), e.g. from `check_galaxy`.
    pa_deg, inc_deg : float
        Position angle (east of north) and inclination; < 89° (an edge-on disk has no
        face-on view to recover).
    wcs : `~astropy.wcs.WCS`, optional
        Where north and east are; None means north up, east left.
    order : int
        Spline order of `scipy.ndimage.affine_transform` (1 = bilinear, no ringing).
    shape : (ny, nx), optional
        Output shape; by default big enough to hold the whole input image (capped at
        four times its larger side).

    Returns
    -------
    image_out : ndarray
        NaN outside the input image.
    transform : `Deprojection`
        The mapping, with ``to_input``/``to_output`` for marking positions.
    """
    pa, inc = _check_angles(pa_deg, inc_deg)
    if float(inc_deg) >= EDGE_ON_DEG:
        msg = (f"inclination {inc_deg:g}° is edge on (>= {EDGE_ON_DEG:g}°): the disk "
               "can't be deprojected; study it along the major axis instead")
        raise ReduxError(msg)
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        msg = f"deproject_image needs a 2-D image; got shape {image.shape}"
        raise ReduxError(msg)
    out_shape, centre = _deprojected_shape(image.shape, x0, y0, pa_deg, inc_deg, wcs, shape)
    a, _ = _sky_axes(wcs, x0, y0)
    ainv = np.linalg.inv(a)
    sp, cp, ci = math.sin(pa), math.cos(pa), math.cos(inc)
    col_u = ainv @ np.array([sp, cp])              # input (dx, dy) per unit of u
    col_v = ainv @ np.array([-cp * ci, sp * ci])   # input (dx, dy) per unit of v
    matrix = np.array([[col_u[1], col_v[1]], [col_u[0], col_v[0]]])
    offset = np.array([y0, x0]) - matrix @ np.array([centre[1], centre[0]])
    bad = ~np.isfinite(image)
    out = ndimage.affine_transform(np.where(bad, 0.0, image), matrix, offset,
                                   output_shape=out_shape, order=order, mode="constant",
                                   cval=np.nan)
    if bad.any():
        spread = ndimage.affine_transform(bad.astype(float), matrix, offset,
                                          output_shape=out_shape, order=1, cval=1.0)
        out[spread > 0] = np.nan
    transform = Deprojection(matrix, offset, out_shape, centre, float(x0), float(y0),
                             float(pa_deg), float(inc_deg), wcs)
    return out, transform


def _deprojected_shape(in_shape, x0, y0, pa_deg, inc_deg, wcs, shape):
    """Output shape and the galaxy centre's output pixel (X, Y), on a whole pixel."""
    if shape is None:
        ny, nx = in_shape
        cx = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5])
        cy = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
        u_, v_, _ = galaxy_frame(cx, cy, x0, y0, pa_deg, inc_deg, wcs=wcs)
        cap = 2 * max(in_shape)
        hu, hv = (min(math.ceil(np.max(np.abs(a))), cap) for a in (u_, v_))
        if max(hu, hv) == cap:
            log.warning("deprojected image capped at %d pixels a side; its edges are cut",
                        2 * cap + 1)
        shape = (2 * hu + 1, 2 * hv + 1)
    shape = (int(shape[0]), int(shape[1]))
    return shape, ((shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0)


def check_galaxy(params, shape, wcs, *, need_distance=False) -> tuple[float, float]:
    """Check a manifest's galaxy against an image; return its centre (x0, y0), 0-based.

    Parameters
    ----------
    params : mapping
        ``{ra, dec, pa_deg, inclination_deg, distance_mpc}`` (degrees, Mpc); ``x``
        and ``y`` (0-based pixels), when present, give the centre instead of ra/dec.
    shape : (ny, nx) or None
        The image's shape; None skips the check that the centre is on the image.
    wcs : `~astropy.wcs.WCS` or None
        Places ra/dec on the image.
    need_distance : bool
        True when luminosities or physical sizes are asked: a missing distance is
        then an error (a distance <= 0 always is).
    """
    if not isinstance(params, Mapping):
        msg = ("the galaxy must be a mapping with ra, dec, pa_deg, inclination_deg, "
               f"distance_mpc; got {type(params).__name__}")
        raise ReduxError(msg)
    _check_angles(_number(params, "pa_deg"), _number(params, "inclination_deg"))
    if params.get("distance_mpc") is not None or need_distance:
        dist = params.get("distance_mpc")
        ok = isinstance(dist, (int, float, np.number)) and not isinstance(dist, bool)
        if not (ok and np.isfinite(dist) and dist > 0):
            msg = (f"galaxy distance_mpc must be positive; got {dist!r}"
                   + (" (luminosities and sizes in pc need it)" if need_distance else ""))
            raise ReduxError(msg)
    if "x" in params and "y" in params:
        x0, y0 = _number(params, "x"), _number(params, "y")
        where = f"x, y = {x0:.1f}, {y0:.1f}"
    elif wcs is not None:
        ra, dec = _number(params, "ra"), _number(params, "dec")
        x0, y0 = (float(c) for c in _pixel(_celestial(wcs), ra, dec))
        where = f"ra, dec = {ra:.5f}, {dec:.5f} -> pixel ({x0:.1f}, {y0:.1f})"
    else:
        msg = "the galaxy centre needs ra and dec with a WCS, or pixel x and y"
        raise ReduxError(msg)
    if shape is not None:
        ny, nx = shape[-2:]
        if not (-0.5 <= x0 < nx - 0.5 and -0.5 <= y0 < ny - 0.5):
            msg = (f"the galaxy centre ({where}) is outside the image of {nx} x {ny} "
                   "pixels; check ra/dec in the manifest and the stack's WCS")
            raise ReduxError(msg)
    return x0, y0


def _number(params, key):
    if key not in params or params[key] is None:
        msg = f"the galaxy has no '{key}'; add it to the manifest's galaxy"
        raise ReduxError(msg)
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        msg = f"galaxy '{key}' must be a number; got {value!r}"
        raise ReduxError(msg)
    return float(value)


# ---- 4. finding the regions -------------------------------------------------------------
#: name -> (unit, dtype, description) of `find_regions`' table.
REGION_COLUMNS = {
    "id": (None, int, "segment label"),
    "x": (u.pix, float, "windowed flux-weighted centroid, 0-based column"),
    "y": (u.pix, float, "windowed flux-weighted centroid, 0-based row"),
    "area_px": (u.pix ** 2, float, "area of the segment (pixels above the isophote)"),
    "r_eq_px": (u.pix, float, "equivalent radius sqrt(area / pi)"),
    "flux": (u.electron / u.s, float, "Kron-aperture line flux, Hα filter rate"),
    "flux_err": (u.electron / u.s, float, "1-sigma error of flux"),
    "snr": (None, float, "flux / flux_err"),
    "peak_snr": (None, float, "highest pixel S/N (line / line_unc) in the segment"),
    "det_sigma": (None, float, "peak significance of the smoothed detection image"),
    "flux_iso": (u.electron / u.s, float, "isophotal (segment) flux"),
    "flux_iso_err": (u.electron / u.s, float, "1-sigma error of flux_iso"),
    "flagged_px": (None, int, "flagged or excluded pixels inside the Kron aperture "
                               "(counted as zero flux)"),
}


def radial_residual(line, line_unc, mask=None, *, x0, y0, pa_deg, inc_deg, wcs=None,
                    fwhm=3.2, width=1.0, exclude=None, nsigma_mask=2.0):
    """The smooth residual of a line image: ring medians in the plane of the disc.

    A continuum subtraction leaves the bulge and the disc a little over- or
    under-subtracted (their colour is not the field stars'), and diffuse ionised gas
    glows between the regions: a smooth light, brightest at the centre, on which the
    inner disc's regions sit. It is measured as the sigma-clipped median of rings
    ``width`` px wide in the deprojected galactocentric radius (`galaxy_frame`), where
    the regions are a minority of each ring; twice: the second time without the pixels
    of what the first pass found above ``nsigma_mask`` (dilated by 2 px), so that the
    regions' own light does not raise the rings. On 10 synthetic fields
    (`tests/hii_fields.py`: 6 regions 12-30 px from a bulge residual of peak 6 e-/s per
    pixel) the inner regions found went from 21 of 60 to 60, their median flux from
    0.92 of the truth (one pass, 3.2 px rings) to 1.005.

    Returns the model image (same shape, the line image's units).
    """
    from photutils.segmentation import detect_sources
    from photutils.utils.exceptions import NoDetectionsWarning

    line, unc = np.asarray(line, float), np.asarray(line_unc, float)
    bad = _unusable(line, unc, mask, exclude)
    ny, nx = line.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    _, _, r = galaxy_frame(xx, yy, x0, y0, pa_deg, inc_deg, wcs=wcs)
    ring = (r / width).astype(int)

    def rings(skip):
        use = ~skip
        idx, vals = ring[use], line[use]
        order = np.argsort(idx, kind="stable")
        idx, vals = idx[order], vals[order]
        starts = np.searchsorted(idx, np.arange(ring.max() + 2))
        centres, levels = [], []
        for k in range(ring.max() + 1):
            v = vals[starts[k]:starts[k + 1]]
            if v.size >= 10:
                centres.append((k + 0.5) * width)
                levels.append(sigma_clipped_stats(v, sigma=2.5, maxiters=10)[1])
        if not centres:
            return np.zeros_like(line)
        return np.interp(r, centres, levels)

    model = rings(bad)
    significance, _ = _significance(line - model, unc, bad, fwhm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        segm = detect_sources(significance, nsigma_mask, n_pixels=5, mask=bad)
    if segm is not None:
        found = ndimage.binary_dilation(segm.data > 0, iterations=2)
        model = rings(bad | found)
    return model


def find_regions(line, line_unc, mask=None, *, nsigma=5.0, npixels=5, fwhm=3.2,
                 deblend=True, exclude=None, deblend_fwhm=None):
    """Detect HII regions in a line image and measure them.

    Detection runs on the S/N image smoothed by a Gaussian of the seeing (a matched
    filter for unresolved regions). ``nsigma`` is a significance *in that smoothed
    image*: the threshold is ``nsigma`` times its noise, which for white noise is
    ``sqrt(Σ k²)`` = 0.21 for FWHM 3.2 px (a kernel of unit sum), and is measured
    from the image itself (sigma-clipped standard deviation) when larger, because
    the resampling of a registered stack correlates neighbouring pixels and the
    uncertainty image does not know it. With a per-pixel noise of 0.02 e-/s, 5σ is
    a region of ~0.6 e-/s (σ ≈ 1.7 px); the demo's regions (20-400 e-/s) are
    detected at 100-3000σ. Segments need ``npixels`` connected pixels and are
    deblended (``DEBLEND``) on the same smoothed image.

    Fluxes are measured in Kron apertures (``KRON_PARAMS``) on the unsmoothed line
    image, with neighbouring segments' pixels replaced by their mirror image through
    the region's centre (photutils' 'correct'). The segment (isophotal) flux misses
    the wings below the isophote: on fields of 25 demo-like regions (Gaussians of
    sigma 1.0-2.2 px in 3.2 px seeing, 20-400 e-/s) detected at ``nsigma=25`` in
    0.05 e-/s noise, the median segment flux was 0.89-0.97 of the truth and faint
    regions lost up to half, while the Kron flux was 0.996-0.998. At the default
    threshold in 0.02 e-/s noise (30 fields) the median Kron flux was 0.997-0.999,
    a circular aperture of 3 sigma (second moments) 0.987-0.989.

    Parameters
    ----------
    line, line_unc : 2-D arrays
        Line image and its 1-sigma uncertainty (e-/s), from `subtract_continuum`.
    mask : 2-D uint16 array, optional
        Bitmask; ``mask > 0`` pixels are ignored (no detection, zero in fluxes).
    nsigma : float
        Detection threshold, in sigma of the smoothed S/N image.
    npixels : int
        Minimum number of connected pixels above it.
    fwhm : float
        Seeing FWHM (pixels) of the smoothing kernel.
    deblend : bool
        Split segments with several peaks (regions along an arm).
    deblend_fwhm : float, optional
        The smoothing (FWHM, px) of the image on which segments are split; half the
        seeing by default. The seeing-smoothed image is the best for finding faint
        regions but blurs two regions 2 FWHM apart into one peak; on half the seeing
        they stay two (10 synthetic fields of `tests/hii_fields.py`: pairs 2-3.2 FWHM
        apart split in 86 of 100 at the full seeing, 99 at half).
    exclude : 2-D bool array, optional
        More pixels to ignore, e.g. residuals of saturated stars.

    Returns
    -------
    segmentation : `~photutils.segmentation.SegmentationImage` or None
        None when nothing is found.
    table : `~astropy.table.Table`
        One row per region, columns ``REGION_COLUMNS``; ``meta`` holds the settings,
        the noise of the smoothed image and the image shape.
    """
    from photutils.segmentation import deblend_sources, detect_sources
    from photutils.utils.exceptions import NoDetectionsWarning

    line, unc = np.asarray(line, float), np.asarray(line_unc, float)
    _same_shape(line=line, line_unc=unc, mask=mask, exclude=exclude)
    bad = _unusable(line, unc, mask, exclude)
    meta = {"nsigma": nsigma, "npixels": npixels, "fwhm": fwhm, "deblend": deblend,
            "deblend_fwhm": 0.5 * fwhm if deblend_fwhm is None else deblend_fwhm,
            "image_shape": list(line.shape),
            "flux_method": f"Kron aperture {KRON_PARAMS}, neighbours mirrored"}
    if bad.all():
        log.warning("find_regions: every pixel is flagged or NaN; no regions")
        return None, _region_table([], meta)
    significance, noise = _significance(line, unc, bad, fwhm)
    meta.update(noise)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)   # logged below instead
        segm = detect_sources(significance, nsigma, n_pixels=npixels, mask=bad)
    if segm is None:
        log.info("find_regions: nothing above %g sigma", nsigma)
        return None, _region_table([], meta)
    if deblend:
        sharper = significance if deblend_fwhm is not None and deblend_fwhm >= fwhm else \
            _significance(line, unc, bad, 0.5 * fwhm if deblend_fwhm is None else deblend_fwhm)[0]
        segm = deblend_sources(sharper, segm, n_pixels=npixels, progress_bar=False,
                               **DEBLEND)
    rows = _measure(line, unc, bad, segm, significance)
    log.info("find_regions: %d regions above %g sigma (noise of the smoothed S/N %.3f, "
             "white-noise value %.3f)", len(rows), nsigma, noise["noise_used"],
             noise["noise_white"])
    return segm, _region_table(rows, meta)


def _significance(line, unc, bad, fwhm):
    """The S/N image smoothed by the seeing, in units of its own noise."""
    sigma = fwhm * FWHM_TO_SIGMA
    snr = np.zeros_like(line)
    np.divide(line, unc, out=snr, where=~bad)
    smooth = ndimage.gaussian_filter(snr, sigma, mode="constant", truncate=4.0)
    half = int(math.ceil(4.0 * sigma)) + 1
    delta = np.zeros((2 * half + 1, 2 * half + 1))
    delta[half, half] = 1.0
    white = float(np.sqrt(np.sum(ndimage.gaussian_filter(delta, sigma, mode="constant",
                                                          truncate=4.0) ** 2)))
    good = smooth[~bad]
    measured = (float(sigma_clipped_stats(good, sigma=3.0, maxiters=10)[2])
                if good.size >= 100 else 0.0)
    used = max(white, measured) if np.isfinite(measured) else white
    return smooth / used, {"noise_white": white, "noise_measured": measured,
                           "noise_used": used}


def _measure(line, unc, bad, segm, significance):
    """One dict per segment (see REGION_COLUMNS)."""
    from photutils.segmentation import SourceCatalog

    cat = SourceCatalog(line, segm, error=unc, mask=bad, kron_params=KRON_PARAMS,
                        aperture_mask_method="correct", progress_bar=False)
    labels = np.asarray(segm.labels)
    x, y = np.asarray(cat.x_centroid_win, float), np.asarray(cat.y_centroid_win, float)
    lost = ~(np.isfinite(x) & np.isfinite(y))
    x[lost], y[lost] = np.asarray(cat.x_centroid)[lost], np.asarray(cat.y_centroid)[lost]
    flux, flux_err = np.asarray(cat.kron_flux, float), np.asarray(cat.kron_flux_err, float)
    iso, iso_err = np.asarray(cat.segment_flux, float), np.asarray(cat.segment_flux_err, float)
    no_kron = ~np.isfinite(flux)
    if no_kron.any():
        log.warning("find_regions: no Kron aperture for regions %s; their flux is the "
                    "segment's", labels[no_kron].tolist())
        flux[no_kron], flux_err[no_kron] = iso[no_kron], iso_err[no_kron]
    area = np.asarray(cat.segment_area.value, float)
    snr_pix = np.zeros_like(line)
    np.divide(line, unc, out=snr_pix, where=~bad)
    # only the labelled pixels (a fraction of a per cent): ndimage sorts what it is given
    inside = segm.data > 0
    seg = segm.data[inside]
    peak = ndimage.maximum(snr_pix[inside], labels=seg, index=labels)
    det = ndimage.maximum(significance[inside], labels=seg, index=labels)
    flagged = [_flagged(ap, bad) for ap in cat.kron_aperture]
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = flux / flux_err
    return [{"id": int(lab), "x": x[i], "y": y[i], "area_px": area[i],
             "r_eq_px": math.sqrt(area[i] / math.pi), "flux": flux[i],
             "flux_err": flux_err[i], "snr": snr[i], "peak_snr": peak[i],
             "det_sigma": det[i], "flux_iso": iso[i], "flux_iso_err": iso_err[i],
             "flagged_px": flagged[i]} for i, lab in enumerate(labels)]


def _unusable(line, unc, mask, exclude):
    """Pixels no region may use: NaN, no positive uncertainty, flagged, or excluded."""
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(line) & np.isfinite(unc) & (unc > 0))
    if mask is not None:
        bad |= np.asarray(mask) > 0
    if exclude is not None:
        bad |= np.asarray(exclude, bool)
    return bad


def region_sums(image, segm, line, line_unc, mask=None, *, exclude=None):
    """Sum of ``image`` in each region's Kron aperture, the one its line flux was measured in.

    The apertures are rebuilt exactly as `find_regions` built them (same line image,
    uncertainty, mask, ``exclude`` and ``KRON_PARAMS``), in the order of its table;
    a region without a Kron aperture gets its segment's sum, as its flux did. Flagged
    pixels and NaN in either image count as zero. Use it for what the line image does
    not hold, e.g. the continuum ``F_R`` under each region, which the error of the
    continuum scale multiplies (see `subtract_continuum`).
    """
    from photutils.segmentation import SourceCatalog

    line, unc = np.asarray(line, float), np.asarray(line_unc, float)
    image = np.asarray(image, float)
    _same_shape(image=image, line=line, line_unc=unc, mask=mask, exclude=exclude)
    bad = _unusable(line, unc, mask, exclude)
    if segm is None:
        return np.zeros(0)
    cat = SourceCatalog(line, segm, error=unc, mask=bad, kron_params=KRON_PARAMS,
                        aperture_mask_method="correct", progress_bar=False)
    clean = np.where(bad | ~np.isfinite(image), 0.0, image)
    seg_sums = ndimage.sum(clean, labels=segm.data, index=np.asarray(segm.labels))
    out = np.asarray(seg_sums, float).copy()
    for i, ap in enumerate(cat.kron_aperture):
        if ap is not None:
            out[i] = float(np.atleast_1d(ap.do_photometry(clean)[0])[0])
    return out


def _flagged(aperture, bad):
    if aperture is None:
        return 0
    return int(np.count_nonzero(aperture.to_mask(method="center").multiply(bad)))


def _region_table(rows, meta):
    t = Table(meta=dict(meta))
    for name, (unit, dtype, desc) in REGION_COLUMNS.items():
        t[name] = np.array([r[name] for r in rows], dtype=dtype)
        t[name].unit, t[name].description = unit, desc
    t.meta["columns"] = {k: v[2] for k, v in REGION_COLUMNS.items()}
    return t


# ---- 5. the catalogue --------------------------------------------------------------------
def catalogue(regions, *, wcs=None, galaxy=None, pixel_scale_arcsec=None,
              flux_per_rate=None) -> Table:
    """The region table of `find_regions` with positions, radii and physical fluxes.

    Adds, where the inputs allow:

    * ``ra``, ``dec`` (deg) with a ``wcs``;
    * ``r_gal_px``: deprojected galactocentric radius (`galaxy_frame`), with a
      ``galaxy`` dict (see `check_galaxy`); ``r_gal_kpc`` also needs its
      ``distance_mpc`` and a pixel scale;
    * ``r_eq_pc`` and ``area_kpc2`` (the segment's size, not deprojected) with a
      distance and a pixel scale;
    * ``flux_cgs``, ``flux_cgs_err`` (erg s⁻¹ cm⁻², ``flux × flux_per_rate``) with
      ``flux_per_rate`` (erg s⁻¹ cm⁻² per e-/s of line in the Hα filter, from the
      flux calibration);
    * ``luminosity``, ``luminosity_err`` (erg/s, ``4π d² F``) and
      ``log_luminosity`` with a distance; no extinction correction (Galactic or
      internal) and no [NII] correction: a narrow Hα filter usually passes
      [NII] 6548, 6583 too;
    * ``surface_brightness`` (erg s⁻¹ cm⁻² arcsec⁻²): the isophotal flux over the
      segment's area, the mean surface brightness inside the isophote.

    ``pixel_scale_arcsec`` defaults to the WCS's. Every column has a unit and a
    description; ``meta['columns']`` repeats the descriptions.
    """
    t = Table(regions, copy=True)
    x, y = np.asarray(t["x"], float), np.asarray(t["y"], float)
    scale = _pixel_scale(wcs, pixel_scale_arcsec)
    add = _adder(t)
    if wcs is not None:
        ra, dec = _world(_celestial(wcs), x, y)
        add("ra", ra, u.deg, "right ascension of the centroid")
        add("dec", dec, u.deg, "declination of the centroid")
    dist = None
    if galaxy is not None:
        # a flux in erg/s/cm^2 needs no distance; luminosities come only with one
        x0, y0 = check_galaxy(galaxy, t.meta.get("image_shape"), wcs)
        _, _, r = galaxy_frame(x, y, x0, y0, galaxy["pa_deg"], galaxy["inclination_deg"],
                               wcs=wcs)
        add("r_gal_px", r, u.pix, "deprojected galactocentric radius")
        dist = galaxy.get("distance_mpc")
        t.meta["galaxy"] = {**dict(galaxy), "x0": x0, "y0": y0}
    if dist is not None and scale is not None:
        kpc_per_px = scale * _RAD_PER_ARCSEC * dist * 1e3
        add("r_gal_kpc", t["r_gal_px"].data * kpc_per_px, u.kpc,
            "deprojected galactocentric radius")
        add("r_eq_pc", np.asarray(t["r_eq_px"], float) * kpc_per_px * 1e3, u.pc,
            "equivalent radius of the segment, sqrt(area / pi)")
        add("area_kpc2", np.asarray(t["area_px"], float) * kpc_per_px ** 2, u.kpc ** 2,
            "area of the segment (on the sky, not deprojected)")
    if flux_per_rate is not None:
        _add_fluxes(t, add, float(flux_per_rate), dist, scale)
    t.meta["pixel_scale_arcsec"] = scale
    return t


def _adder(t):
    t.meta.setdefault("columns", {})

    def add(name, values, unit, description):
        t[name] = np.asarray(values, float)
        t[name].unit, t[name].description = unit, description
        t.meta["columns"][name] = description
    return add


def _add_fluxes(t, add, per_rate, dist, scale):
    flux = np.asarray(t["flux"], float) * per_rate
    flux_err = np.asarray(t["flux_err"], float) * per_rate
    cgs = u.erg / u.s / u.cm ** 2
    add("flux_cgs", flux, cgs, "Hα line flux (Kron aperture), flux x flux_per_rate")
    add("flux_cgs_err", flux_err, cgs, "1-sigma error of flux_cgs")
    if dist is not None:
        four_pi_d2 = 4.0 * math.pi * (dist * _CM_PER_MPC) ** 2
        lum = four_pi_d2 * flux
        add("luminosity", lum, u.erg / u.s, "Hα luminosity 4 pi d^2 F, no extinction "
            "or [NII] correction")
        add("luminosity_err", four_pi_d2 * flux_err, u.erg / u.s, "1-sigma error")
        with np.errstate(divide="ignore", invalid="ignore"):
            log_l = np.where(lum > 0, np.log10(lum), np.nan)
        add("log_luminosity", log_l, u.dex(u.erg / u.s), "log10 of luminosity / (erg/s); "
            "NaN where the flux is not positive")
    if scale is not None:
        sb = np.asarray(t["flux_iso"], float) * per_rate / (
            np.asarray(t["area_px"], float) * scale ** 2)
        add("surface_brightness", sb, cgs / u.arcsec ** 2,
            "mean Hα surface brightness inside the segment (flux_iso / area)")


def _pixel_scale(wcs, given):
    """Arcsec per pixel: ``given``, else the WCS's (geometric mean of its axes)."""
    from_wcs = None
    if wcs is not None:
        from astropy.wcs.utils import proj_plane_pixel_area
        from_wcs = math.sqrt(proj_plane_pixel_area(_celestial(wcs))) * 3600.0
    if given is None:
        return from_wcs
    given = float(given)
    if not (np.isfinite(given) and given > 0):
        msg = f"pixel_scale_arcsec must be positive; got {given!r}"
        raise ReduxError(msg)
    if from_wcs is not None and abs(given / from_wcs - 1) > 0.01:
        log.warning("pixel_scale_arcsec %.4f differs from the WCS's %.4f; using %.4f",
                    given, from_wcs, given)
    return given


# ---- 6. DS9 regions ----------------------------------------------------------------------
def lf_slope(luminosity, *, lo, hi=None):
    """Maximum-likelihood slope ``b`` of a luminosity function ``dN/dlog10 L ~ L**b``.

    Fitted to the regions themselves, not to a histogram's bins (whose few counts
    each would make a line through them mean little): the log-luminosities ``x``
    between ``log10(lo)`` and ``log10(hi)`` (default: the brightest) are taken as
    drawn from a density ``~ 10**(b x)`` truncated to that range, and its likelihood
    is maximised over ``b`` on a fine grid. ``b = -1`` is ``dN/dL ~ L**-2``, what HII
    regions of real spiral galaxies follow; ``b = 0`` is a flat count per dex.

    Returns
    -------
    (b, b_err, n)
        The slope, its 1-sigma error (where the log-likelihood falls by 1/2 from its
        peak; the larger side) and the number of regions used.

    >>> import numpy as np
    >>> x = np.linspace(38.0, 40.0, 201)[:-1] + 0.005    # flat per dex
    >>> b, err, n = lf_slope(10 ** x, lo=1e38, hi=1e40)
    >>> round(b, 2), n
    (0.0, 200)
    """
    lum = np.asarray(luminosity, float)
    lum = lum[np.isfinite(lum) & (lum > 0)]
    a = math.log10(lo)
    c = math.log10(hi) if hi is not None else float(np.log10(lum.max()))
    x = np.log10(lum)
    x = x[(x >= a) & (x <= c)]
    n = x.size
    if n < 3 or c <= a:
        msg = f"lf_slope: {n} regions between {lo:.3g} and {10 ** c:.3g}; need at least 3"
        raise ReduxError(msg)
    grid = np.linspace(-4.0, 4.0, 8001)
    k = grid * math.log(10.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # log of the normalisation of 10**(b x) over [a, c]; at b = 0 it is log(c - a)
        norm = np.where(np.abs(k) < 1e-9, math.log(c - a),
                        np.log(np.abs(np.expm1(k * (c - a))) / np.abs(k)) + k * a)
    loglike = k * x.sum() - n * norm
    best = int(np.argmax(loglike))
    inside = grid[loglike >= loglike[best] - 0.5]
    err = float(max(grid[best] - inside.min(), inside.max() - grid[best]))
    return float(grid[best]), err, int(n)


def write_ds9(table, path, *, wcs=None):
    """A DS9 region file: one circle of radius ``r_eq`` per region, labelled with its id.

    Sky circles (ICRS, radius in arcsec) with a ``wcs`` (centres from ``ra``/``dec``
    when the table has them), else image circles (DS9 counts pixels from 1; the
    ``regions`` package converts). Written under a temporary name and renamed.
    """
    try:
        from regions import CirclePixelRegion, CircleSkyRegion, PixCoord, Regions
    except ImportError:
        msg = "write_ds9 needs the 'regions' package: pip install regions"
        raise ReduxError(msg) from None
    from astropy.coordinates import SkyCoord

    ids = [str(int(i)) for i in table["id"]]
    radius = np.asarray(table["r_eq_px"], float)
    x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
    if wcs is not None:
        w = _celestial(wcs)
        if "ra" in table.colnames and "dec" in table.colnames:
            ra, dec = np.asarray(table["ra"], float), np.asarray(table["dec"], float)
        else:
            ra, dec = _world(w, x, y)
        scale = _pixel_scale(w, None)
        shapes = [CircleSkyRegion(SkyCoord(a, d, unit="deg", frame="icrs"), r * scale * u.arcsec)
                  for a, d, r in zip(ra, dec, radius, strict=True)]
    else:
        shapes = [CirclePixelRegion(PixCoord(a, b), r)
                  for a, b, r in zip(x, y, radius, strict=True)]
    if len(shapes) > 1:
        for shape, label in zip(shapes, ids, strict=True):
            shape.meta["text"] = label
    text = Regions(shapes).serialize(format="ds9") if shapes else \
        "# Region file format: DS9 astropy/regions\n# no regions\n"
    if len(shapes) == 1:
        # regions moves metadata shared by all regions to a 'global' line, which DS9
        # doesn't apply to labels: put the one label on its circle instead
        text = text.rstrip("\n") + f" # text={{{ids[0]}}}\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    log.info("wrote %d regions to %s", len(shapes), path)
    return path


# ---- 7. bubble charts --------------------------------------------------------------------
def bubble_charts(table, path_2d, path_3d, *, title=""):
    """Interactive charts of the regions: a 2-D map and a 3-D one with log L upwards.

    Marker diameters are proportional to ``sqrt(luminosity)`` (so areas to L), or to
    ``sqrt(flux)`` without luminosities, with a floor of 3 px so faint regions stay
    visible; colour is the deprojected galactocentric radius (kpc, else pixels) with
    a colour bar. Positions are RA/Dec (RA increasing to the left, equal angular
    scales) when the table has them, else pixels. Both files are standalone HTML
    (plotly.js included, ~5 MB each), written under temporary names and renamed.

    Returns
    -------
    fig_2d, fig_3d : `plotly.graph_objects.Figure`
    """
    import plotly.graph_objects as go

    cols = table.colnames
    sky = "ra" in cols and "dec" in cols
    xk, yk = ("ra", "dec") if sky else ("x", "y")
    xs, ys = np.asarray(table[xk], float), np.asarray(table[yk], float)
    size_key = next(k for k in ("luminosity", "flux_cgs", "flux") if k in cols)
    values = np.asarray(table[size_key], float)
    sizes = _bubble_sizes(values)
    colour_key = next((k for k in ("r_gal_kpc", "r_gal_px") if k in cols), None)
    colour = np.asarray(table[colour_key], float) if colour_key else None
    unit_of = {k: str(table[k].unit) if table[k].unit else "" for k in cols}
    hover = _hover(table, unit_of)
    marker = {"size": sizes, "sizemode": "diameter", "line": {"width": 0.5, "color": "black"},
              "opacity": 0.8}
    if colour is not None:
        marker.update(color=colour, colorscale="Viridis", showscale=True,
                      colorbar={"title": {"text": f"{colour_key} ({unit_of[colour_key]})"},
                                # 1e-14, not plotly's SI "10f"
                                "exponentformat": "power"})
    axis_x, axis_y = ("RA (deg)", "Dec (deg)") if sky else ("x (pixel)", "y (pixel)")
    fig2 = go.Figure(go.Scatter(x=xs, y=ys, mode="markers", marker=marker, text=hover,
                                hoverinfo="text", name="HII regions"))
    fig2.update_layout(title=title or f"{len(xs)} HII regions", xaxis_title=axis_x,
                       yaxis_title=axis_y, template="plotly_white")
    ratio = 1.0 / math.cos(math.radians(float(np.nanmedian(ys)))) if sky and len(ys) else 1.0
    fig2.update_yaxes(scaleanchor="x", scaleratio=ratio)
    if sky:
        fig2.update_xaxes(autorange="reversed")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(values > 0, np.log10(values), np.nan)
    marker3 = {**marker, "size": sizes / 2.0}
    marker3.pop("sizemode")
    fig3 = go.Figure(go.Scatter3d(x=xs, y=ys, z=z, mode="markers", marker=marker3,
                                  text=hover, hoverinfo="text", name="HII regions"))
    z_title = f"log10 {size_key} ({unit_of[size_key]})"
    fig3.update_layout(title=title or f"{len(xs)} HII regions", template="plotly_white",
                       scene={"xaxis": {"title": {"text": axis_x},
                                        "autorange": "reversed" if sky else True},
                              "yaxis": {"title": {"text": axis_y}},
                              "zaxis": {"title": {"text": z_title}}})
    for fig, path in ((fig2, path_2d), (fig3, path_3d)):
        with atomic_path(path) as tmp:
            fig.write_html(str(tmp), include_plotlyjs=True, full_html=True, auto_open=False)
    log.info("wrote bubble charts %s and %s", path_2d, path_3d)
    return fig2, fig3


def _bubble_sizes(values, biggest=40.0, smallest=3.0):
    """Marker diameters proportional to sqrt(value), the largest ``biggest`` px."""
    positive = np.where(np.isfinite(values) & (values > 0), values, 0.0)
    top = positive.max() if positive.size else 0.0
    if top <= 0:
        return np.full(values.shape, smallest)
    return np.maximum(biggest * np.sqrt(positive / top), smallest)


def _hover(table, unit_of):
    """One hover text per region: id, flux, luminosity, radius."""
    keys = ["flux", "flux_cgs", "luminosity", "r_gal_kpc", "r_gal_px", "r_eq_pc"]
    shown = [k for k in keys if k in table.colnames]
    texts = []
    for row in table:
        parts = [f"id {row['id']}"]
        parts += [f"{k} = {float(row[k]):.3g} {unit_of[k]}" for k in shown]
        texts.append("<br>".join(parts))
    return texts
