"""The galaxy's geometry: north on the image, the disk's frame, deprojection, checks of the manifest's galaxy."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import ReduxError
from ..skywcs import celestial_wcs, pixel_of, world_of
from .constants import EDGE_ON_DEG

log = logging.getLogger(__name__)



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
    w = celestial_wcs(wcs, required=True)
    px = float(x) + step * np.array([0.0, 1.0, -1.0, 0.0, 0.0])
    py = float(y) + step * np.array([0.0, 0.0, 0.0, 1.0, -1.0])
    lon, lat = world_of(w, px, py)
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


def galaxy_frame(x, y, *, x0, y0, pa_deg, inc_deg, wcs=None):
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
        u_, v_, _ = galaxy_frame(x, y, x0=self.x0, y0=self.y0, pa_deg=self.pa_deg,
                                 inc_deg=self.inc_deg, wcs=self.wcs)
        return self.centre[0] + v_, self.centre[1] + u_


def deproject_image(image, *, x0, y0, pa_deg, inc_deg, wcs=None, order=1, shape=None):
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
        u_, v_, _ = galaxy_frame(cx, cy, x0=x0, y0=y0, pa_deg=pa_deg, inc_deg=inc_deg, wcs=wcs)
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
        x0, y0 = (float(c) for c in pixel_of(celestial_wcs(wcs, required=True), ra, dec))
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


