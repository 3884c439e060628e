"""Registering by stars or by the WCS: `fit_similarity`, `match_stars` (triangle asterisms, astroalign-style), `transform_from_pairs`, `refine`, `register_stars`, `register_frame`, `register_wcs`."""

from __future__ import annotations

import numpy as np

from .transform import MAD_TO_SIGMA, RegistrationError, Transform, overlap_fraction
from .xcorr import register_xcorr


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
    than ``significance`` times their uncertainty (the similarity's own residual over
    the square root of the number of stars), they are noise, and only the shift is kept.
    The translation's residual must not be the yardstick: a real rotation inflates it,
    and a turned frame would then pass for a shifted one.
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
    if parity > 0 and moved < significance * max(rms, 1e-3) / np.sqrt(max(n, 1)):
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


def register_stars(src_xy, ref_xy, *, significance=3.0, min_pairs=4, max_residual=1.0):
    """Transform from matched star patterns (astroalign), refined with every star.

    Three stars always form *some* triangle, and a triangle of noise peaks can match a
    triangle of real stars by chance; so a match is accepted only when at least
    ``min_pairs`` stars pair up and the fitted transform leaves them within
    ``max_residual`` pixels (rms); otherwise `RegistrationError`.
    """
    if len(src_xy) < 3 or len(ref_xy) < 3:
        msg = (f"too few stars to match ({len(src_xy)} in the frame, {len(ref_xy)} in the "
               "reference; need 3)")
        raise RegistrationError(msg)
    ms, mr, parity = match_stars(np.asarray(src_xy, float), np.asarray(ref_xy, float))
    first = transform_from_pairs(ms, mr, parity=parity, significance=significance)
    found = refine(first, src_xy, ref_xy)
    if found.n_stars < min_pairs or not found.residual <= max_residual:
        msg = (f"too few stars to trust a match: {found.n_stars} paired with the reference "
               f"(need {min_pairs}), residual {found.residual:.2f} px")
        raise RegistrationError(msg)
    return found


def register_frame(src_xy, ref_xy, *, wcs=None, ref_wcs=None, shape=None, image=None,
                   ref_image=None, bad=None, ref_bad=None, fwhm=3.5, trust_wcs=False):
    """Register one frame by the best method its data allow; say which and why.

    In order:

    1. the celestial WCS of both frames (when both have one), refined with the stars
       it pairs up (``'wcs+stars: ...'``);
    2. star-pattern matching (``'stars: translation'`` or ``'stars: similarity'``);
    3. cross-correlation of the frames' sources (`register_xcorr`, a pure shift),
       when the images are given and of one size;
    4. the WCS alone, only if ``trust_wcs``: a frame in which no star confirms the
       WCS is usually blank (clouds, a closed dome) and is better left out.

    Raises `RegistrationError` with every method's reason when none works.

    Parameters
    ----------
    src_xy, ref_xy : (n, 2) arrays
        Star positions (x, y, 0-based) in the frame and in the reference (`find_stars`).
    wcs, ref_wcs : `~astropy.wcs.WCS`, optional
        Their celestial WCS, when the headers have one.
    shape : tuple
        Shape of the frame (needed with a WCS).
    image, ref_image : 2-D arrays, optional
        The frames themselves, for the cross-correlation.
    bad, ref_bad : bool arrays, optional
        Pixels the cross-correlation ignores.
    fwhm : float
        Star size in pixels, for the cross-correlation.
    trust_wcs : bool
        Accept a WCS that no star confirms.
    """
    reasons = []
    src_xy = np.asarray(src_xy, float).reshape(-1, 2)
    ref_xy = np.asarray(ref_xy, float).reshape(-1, 2)
    by_wcs = None
    if wcs is not None and ref_wcs is not None and wcs.has_celestial and ref_wcs.has_celestial:
        by_wcs = register_wcs(wcs, ref_wcs, shape)
        if overlap_fraction(by_wcs, shape, shape) == 0:
            away = float(np.hypot(*by_wcs.apply(*((np.array(shape[::-1]) - 1) / 2))
                                  - (np.array(shape[::-1]) - 1) / 2))
            reasons.append(f"its WCS puts it {away:.0f} px from the reference, with no overlap "
                           "(another field?)")
        elif len(src_xy) >= 3 and len(ref_xy) >= 3:
            better = refine(by_wcs, src_xy, ref_xy, method="wcs+stars")
            if better is not by_wcs:
                return better
            reasons.append("the WCS puts fewer than 3 of the frame's stars on a reference "
                           "star (a WCS off by more than 2 px?)")
    try:
        return register_stars(src_xy, ref_xy)
    except RegistrationError as exc:
        reasons.append(str(exc))
    if image is not None and ref_image is not None:
        if np.shape(image) == np.shape(ref_image):
            try:
                return register_xcorr(image, ref_image, bad=bad, ref_bad=ref_bad, fwhm=fwhm)
            except RegistrationError as exc:
                reasons.append(str(exc))
        else:
            reasons.append("cross-correlation needs frames of one size")
    if by_wcs is not None and trust_wcs:
        return by_wcs
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


