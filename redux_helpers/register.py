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
reported as a pure translation. A frame with too few stars falls back to the offset
between the two frames' celestial WCS (when both have one) and then to phase
cross-correlation of the images, which measures a pure shift to a fraction of a pixel.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
from astropy.stats import sigma_clipped_stats
from scipy import ndimage

from .errors import ReduxError

log = logging.getLogger(__name__)


MAD_TO_SIGMA = 1.4826


class RegistrationError(ReduxError):
    """A frame that can't be placed on the reference grid; the message says why."""


@dataclass
class Transform:
    """``q = matrix @ p + offset``: frame pixel (x, y) -> reference pixel (x, y), 0-based."""

    matrix: np.ndarray = field(default_factory=lambda: np.eye(2))
    offset: np.ndarray = field(default_factory=lambda: np.zeros(2))
    method: str = "identity"
    n_stars: int = 0
    residual: float = 0.0          # rms distance of matched stars after the fit, pixels

    def apply(self, x, y):
        """Reference-grid positions of frame positions (x, y)."""
        x, y = np.asarray(x, float), np.asarray(y, float)
        m, t = self.matrix, self.offset
        return m[0, 0] * x + m[0, 1] * y + t[0], m[1, 0] * x + m[1, 1] * y + t[1]

    def inverse(self, x, y):
        """Frame positions of reference-grid positions (x, y)."""
        inv = np.linalg.inv(self.matrix)
        x, y = np.asarray(x, float) - self.offset[0], np.asarray(y, float) - self.offset[1]
        return inv[0, 0] * x + inv[0, 1] * y, inv[1, 0] * x + inv[1, 1] * y

    @property
    def rotation_deg(self) -> float:
        return float(np.degrees(np.arctan2(self.matrix[1, 0], self.matrix[0, 0])))

    @property
    def scale(self) -> float:
        return float(np.sqrt(abs(np.linalg.det(self.matrix))))

    @property
    def flipped(self) -> bool:
        return bool(np.linalg.det(self.matrix) < 0)

    def summary(self) -> dict:
        """A table row: method, shift, rotation, scale, stars used, residual."""
        return {"method": self.method, "dx": float(self.offset[0]), "dy": float(self.offset[1]),
                "rotation_deg": self.rotation_deg, "scale": self.scale,
                "flipped": self.flipped, "n_stars": self.n_stars, "residual_px": self.residual}


def find_stars(data, *, mask=None, fwhm=3.5, nsigma=5.0, max_stars=200, saturate=None):
    """Detect and centre point sources; return (x, y, flux) of the brightest, 0-based.

    Parameters
    ----------
    data : array
        A calibrated frame (any units; the sky is removed here with sigma-clipped stats).
    mask : bool array, optional
        Pixels to ignore (cosmic rays, bad columns, saturated cores).
    fwhm : float
        Approximate seeing in pixels.
    nsigma : float
        Detection threshold above the sky noise.
    max_stars : int
        Keep at most this many, brightest first.
    saturate : float, optional
        Stars whose peak exceeds this (in ``data``'s units) are dropped. Stars touching
        a masked pixel (a saturated core, a cosmic ray, a bad column) are dropped too:
        their centres would be biased.
    """
    from photutils.detection import DAOStarFinder

    data = np.asarray(data, float)
    bad = ~np.isfinite(data)
    if mask is not None:
        bad |= np.asarray(mask, bool)
    _, med, std = sigma_clipped_stats(data, mask=bad, sigma=3.0)
    if not np.isfinite(std) or std <= 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    finder = DAOStarFinder(nsigma * std, fwhm, exclude_border=True,
                           peak_max=None if saturate is None else saturate - med)
    clean = np.where(bad, med, data) - med
    found = finder(clean, mask=bad)
    if found is None or len(found) == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    near_bad = ndimage.binary_dilation(bad, iterations=max(int(round(fwhm)), 1))
    ix = np.clip(np.round(found["x_centroid"]).astype(int), 0, data.shape[1] - 1)
    iy = np.clip(np.round(found["y_centroid"]).astype(int), 0, data.shape[0] - 1)
    found = found[~near_bad[iy, ix]]
    found.sort("flux", reverse=True)
    found = found[:max_stars]
    x, y = refine_centroids(clean, found["x_centroid"], found["y_centroid"], fwhm=fwhm)
    return x, y, np.asarray(found["flux"], float)


def refine_centroids(data, x, y, *, fwhm=3.5):
    """Centres from a 2-D Gaussian fitted in a box around each (x, y) (photutils)."""
    from photutils.centroids import centroid_2dg, centroid_sources

    box = 2 * int(np.ceil(fwhm)) + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cx, cy = centroid_sources(data, np.asarray(x, float), np.asarray(y, float),
                                  box_size=box, centroid_func=centroid_2dg)
    bad = ~np.isfinite(cx) | ~np.isfinite(cy) | (np.hypot(cx - x, cy - y) > fwhm)
    return np.where(bad, x, cx), np.where(bad, y, cy)


def fit_similarity(src, dst, *, clip=3.0, iters=3):
    """Least-squares similarity transform ``dst ≈ s R src + t``, rejecting outliers.

    Returns (matrix, offset, rms residual, number of pairs kept).
    """
    from skimage.transform import SimilarityTransform

    keep = np.ones(len(src), bool)
    for _ in range(iters):
        tf = SimilarityTransform.from_estimate(src[keep], dst[keep]) \
            if hasattr(SimilarityTransform, "from_estimate") else _estimate(src[keep], dst[keep])
        res = np.hypot(*(tf(src) - dst).T)
        robust = MAD_TO_SIGMA * np.median(res[keep])
        new = res < max(clip * robust, 0.05)
        if new.sum() < 3 or np.array_equal(new, keep):
            break
        keep = new
    m = tf.params
    res = np.hypot(*(tf(src[keep]) - dst[keep]).T)
    return m[:2, :2].copy(), m[:2, 2].copy(), float(np.sqrt(np.mean(res ** 2))), int(keep.sum())


def _estimate(src, dst):
    from skimage.transform import SimilarityTransform

    tf = SimilarityTransform()
    tf.estimate(src, dst)
    return tf


def match_stars(src_xy, ref_xy, *, tries=3, max_residual=1.0):
    """Pair the stars of a frame with the reference's by their pattern (astroalign).

    Returns (src pairs, ref pairs, parity): (n, 2) arrays and -1 for a mirrored frame
    (x -> -x), else 1; raises `RegistrationError` when no
    consistent pattern is found. A mirrored frame is tried mirrored as well. astroalign's
    search is randomised (RANSAC): a match is accepted only when a similarity fitted
    to its pairs leaves them within ``max_residual`` pixels, and is tried again
    otherwise.
    """
    import astroalign

    errors = []
    for parity in (1, -1):
        s = src_xy * np.array([parity, 1.0])
        for _ in range(tries):
            try:
                _, (ms, mr) = astroalign.find_transform(s, ref_xy, max_control_points=50)
            except (astroalign.MaxIterError, ValueError, TypeError) as exc:
                errors.append(str(exc))
                continue
            rms = fit_similarity(ms, mr)[2] if len(ms) >= 3 else np.inf
            if rms < max_residual:
                return ms * np.array([parity, 1.0]), mr, parity
            errors.append(f"a candidate match left its stars {rms:.1f} px apart")
    msg = f"no common star pattern with the reference ({errors[-1] if errors else 'no stars'})"
    raise RegistrationError(msg)


def transform_from_pairs(ms, mr, *, parity=1, method="stars", significance=3.0):
    """Fit a `Transform` to matched star positions (frame ``ms`` -> reference ``mr``).

    A similarity (shift, rotation, scale; mirrored first when ``parity`` is -1) is
    fitted; when the rotation and the change of scale it finds move the stars by less
    than ``significance`` times the uncertainty of the shift, they are noise, and only
    the shift is kept.
    """
    mirror = np.diag([float(parity), 1.0])
    matrix, offset, rms, n = fit_similarity(ms @ mirror, mr)   # mirror first, then a similarity
    matrix = matrix @ mirror
    d = mr - ms
    shift = np.median(d, axis=0)
    good = np.ones(len(d), bool)
    for _ in range(3):                      # clip stars whose shift disagrees (blends, CRs)
        r = np.hypot(*(d - shift).T)
        good = r < max(3 * MAD_TO_SIGMA * np.median(r[good]), 0.05)
        shift = d[good].mean(axis=0)
    rms_t = float(np.sqrt(np.mean(np.hypot(*(d[good] - shift).T) ** 2)))
    radius = np.sqrt(np.mean(np.sum((ms - ms.mean(axis=0)) ** 2, axis=1)))
    rot = np.arctan2(matrix[1, 0], matrix[0, 0])
    scale = np.sqrt(abs(np.linalg.det(matrix)))
    moved = max(abs(rot), abs(scale - 1)) * radius
    if parity > 0 and moved < significance * rms_t / np.sqrt(max(good.sum(), 1)):
        return Transform(np.eye(2), shift, f"{method}: translation", int(good.sum()), rms_t)
    return Transform(matrix, offset, f"{method}: similarity", n, rms)


def refine(transform: Transform, src_xy, ref_xy, *, radius=2.0, method=None):
    """Refit a first guess with every star that lands within ``radius`` px of a reference star.

    Pattern matching uses a few tens of bright stars; once the frames are roughly
    aligned, every detected star can be paired with its nearest neighbour, and the fit
    over all of them is several times more precise.
    """
    from scipy.spatial import cKDTree

    src_xy, ref_xy = np.asarray(src_xy, float), np.asarray(ref_xy, float)
    if len(src_xy) < 3 or len(ref_xy) < 3:
        return transform
    px, py = transform.apply(src_xy[:, 0], src_xy[:, 1])
    dist, idx = cKDTree(ref_xy).query(np.c_[px, py])
    ok = dist < radius
    # one reference star takes at most one frame star
    _, first = np.unique(idx[ok], return_index=True)
    keep = np.flatnonzero(ok)[first]
    if len(keep) < 3:
        return transform
    parity = -1 if transform.flipped else 1
    name = method or transform.method.split(":")[0]
    return transform_from_pairs(src_xy[keep], ref_xy[idx[keep]], parity=parity, method=name)


def register_stars(src_xy, ref_xy, *, significance=3.0):
    """Transform from matched star patterns (astroalign), refined with every star."""
    if len(src_xy) < 3 or len(ref_xy) < 3:
        msg = (f"too few stars to match ({len(src_xy)} in the frame, {len(ref_xy)} in the "
               "reference; need 3)")
        raise RegistrationError(msg)
    ms, mr, parity = match_stars(np.asarray(src_xy, float), np.asarray(ref_xy, float))
    first = transform_from_pairs(ms, mr, parity=parity, significance=significance)
    return refine(first, src_xy, ref_xy)


def register_frame(src_xy, ref_xy, *, wcs=None, ref_wcs=None, shape=None, image=None,
                   ref_image=None, mask=None, ref_mask=None):
    """Register one frame by the best method its data allow; say which and why.

    In order: the celestial WCS of both frames (when both have one) refined with the
    stars; star-pattern matching; phase cross-correlation of the images (a pure
    shift). Raises `RegistrationError` with every method's reason when none works.
    """
    reasons = []
    if wcs is not None and ref_wcs is not None and wcs.has_celestial and ref_wcs.has_celestial:
        first = register_wcs(wcs, ref_wcs, shape)
        if len(src_xy) >= 3 and len(ref_xy) >= 3:
            better = refine(first, src_xy, ref_xy, method="wcs+stars")
            if better is not first:
                return better
        reasons.append("too few stars to refine the WCS")
        return first
    try:
        return register_stars(src_xy, ref_xy)
    except RegistrationError as exc:
        reasons.append(str(exc))
    if image is not None and ref_image is not None:
        if image.shape == ref_image.shape:
            return register_xcorr(image, ref_image, mask=mask, ref_mask=ref_mask)
        reasons.append("cross-correlation needs frames of one size")
    msg = "; ".join(reasons)
    raise RegistrationError(msg)


def register_wcs(wcs, ref_wcs, shape) -> Transform:
    """Transform implied by two celestial WCS (a least-squares fit over a grid of points)."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny:9j, 0:nx:9j]
    sky = wcs.pixel_to_world(xx.ravel(), yy.ravel())
    rx, ry = ref_wcs.world_to_pixel(sky)
    src = np.c_[xx.ravel(), yy.ravel()]
    dst = np.c_[rx, ry]
    ok = np.all(np.isfinite(dst), axis=1)
    matrix, offset, rms, n = fit_similarity(src[ok], dst[ok])
    return Transform(matrix, offset, "wcs", 0, rms)


def register_xcorr(image, ref_image, *, mask=None, ref_mask=None, upsample=100) -> Transform:
    """Pure translation by phase cross-correlation, to 1/``upsample`` pixel."""
    from skimage.filters import window
    from skimage.registration import phase_cross_correlation

    def prep(a, m):
        a = np.asarray(a, float)
        bad = ~np.isfinite(a) if m is None else (~np.isfinite(a) | np.asarray(m, bool))
        _, med, _ = sigma_clipped_stats(a, mask=bad)
        # a Hann window keeps the frame edges from correlating with each other
        return (np.where(bad, med, a) - med) * window("hann", a.shape)

    # plain cross-correlation: the phase-only version chases noise on faint frames
    shift, _, _ = phase_cross_correlation(prep(ref_image, ref_mask), prep(image, mask),
                                          upsample_factor=upsample, normalization=None)
    dy, dx = shift
    # phase_cross_correlation returns the shift that moves `image` onto `ref_image`
    return Transform(np.eye(2), np.array([dx, dy]), "cross-correlation", 0, np.nan)


def overlap_fraction(transform: Transform, shape, ref_shape) -> float:
    """Fraction of the reference grid that the transformed frame covers."""
    ny, nx = ref_shape
    yy, xx = np.mgrid[0:ny:32j, 0:nx:32j]
    fx, fy = transform.inverse(xx, yy)
    inside = (fx >= 0) & (fx <= shape[1] - 1) & (fy >= 0) & (fy <= shape[0] - 1)
    return float(inside.mean())
