"""Choosing the sky a frame supports: the checks of a radial fit, `SkyChoice`, `sky_for_frame`, and `rate_outliers` across a filter's frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.stats import mad_std

from ..errors import ReduxError
from .galaxy import RadialProfile, elliptical_radius, radial_sky, ring_profile
from .sky import sky_model
from .sources import _as_image, _mask_of, detect

#: The radial fit must span at least this many scale lengths: the disc's model at the
#: outermost fitted ring is then below exp(-3) = 5 % of its value at the innermost one.
MIN_SCALE_LENGTHS = 3.0
#: The galaxy's light at the innermost fitted ring, in errors of a ring median, at least.
MIN_SIGNAL = 10.0
#: ``G``'s uncertainty may be at most this many times a sky pixel's noise: a sky wrong
#: by 0.1 sigma per pixel is ~0.2 % of a sky of 2500 e- (photon noise 50 e-).
MAX_OFFSET_ERROR = 0.1
#: ``G`` plus the fitted galaxy light must match the masked sky within the larger of
#: this many errors and this fraction of a sky pixel's noise (`check_against_masked`).
MAX_MASKED_ERRORS, MAX_MASKED_DIFF = 3.0, 0.2
#: Radial sky rates of one filter that differ from the others' median by more than
#: this fraction (and by more than 5 of their errors) fall back; QA's threshold too.
MAX_RATE_SCATTER = 0.2


def scale_length(info):
    """The fitted scale length ``h`` of an exponential `RadialProfile` (NaN otherwise)."""
    if info.profile != "exponential":
        return float("nan")
    return float(-info.model.tau_0.value)


def check_radial_fit(info, *, pixel_noise, min_scale_lengths=MIN_SCALE_LENGTHS,
                     max_offset_error=MAX_OFFSET_ERROR, min_signal=MIN_SIGNAL):
    """Reasons a radial-profile sky can't be trusted; an empty list when it can.

    A fit ``A exp(-r/h) + G`` tells the sky ``G`` apart from the galaxy only where the
    profile is seen to fall: over rings that span several scale lengths. Fitted only
    where the disc has already faded (a fit that starts too far out), the rings are
    flat and ``A``, ``h`` and ``G`` trade off against one another: ``G`` can be
    anything from the sky to the sky plus the disc's faint tail.

    Parameters
    ----------
    info : `RadialProfile`
        The fit (`radial_sky`).
    pixel_noise : float
        A sky pixel's noise (standard deviation), in the unit of the frame.
    min_scale_lengths : float
        The fitted range ``rmin``..(outermost ring) must span at least this many scale
        lengths ``h``: the profile has then fallen to ``exp(-min_scale_lengths)`` of
        its innermost fitted value, i.e. it reaches the sky inside the fitted range.
    max_offset_error : float
        Largest uncertainty of ``G`` allowed, in units of ``pixel_noise``.
    min_signal : float
        The galaxy's model above ``G`` at the innermost fitted ring must exceed this
        many times a ring median's error: a fit that starts where the disc has faded
        (or whose "disc" is a hole, ``A < 0``) says nothing about ``G``.

    Returns
    -------
    list of str
        One sentence per failed check.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[0:200, 0:200]
    >>> img = 1000 + 500 * np.exp(-np.hypot(xx - 100, yy - 100) / 10.0)
    >>> img = img + np.random.default_rng(0).normal(0, 10, img.shape)
    >>> g, info = radial_sky(img, (100, 100), rmax=140, rmin=10)
    >>> check_radial_fit(info, pixel_noise=10.0)
    []
    >>> g, info = radial_sky(img, (100, 100), rmax=140, rmin=100)   # the disc has faded
    >>> bool(check_radial_fit(info, pixel_noise=10.0))
    True
    """
    reasons = []
    g, g_err = info.offset, info.offset_error
    if not (np.isfinite(g) and np.isfinite(g_err)):
        return ["the profile fit failed (no finite sky G or no uncertainty)"]
    r_in = float(np.min(info.radius[info.fitted]))
    r_out = float(np.max(info.radius[info.fitted]))
    h = scale_length(info)
    inner = float(info.model(r_in) - g)            # the galaxy's light at the first fitted ring
    ring_err = float(np.median(info.uncertainty[info.fitted]))
    if not inner > min_signal * ring_err:
        reasons.append(
            f"the galaxy has faded before the fit starts: its model at r = {r_in:.0f} px is "
            f"{inner:.2f} above G, not more than {min_signal:g} x a ring median's error "
            f"({ring_err:.2f}); the rings are flat and G trades off against the disc")
    elif info.profile == "exponential":
        span = (r_out - r_in) / h if h > 0 else 0.0
        if span < min_scale_lengths:
            reasons.append(
                f"the profile does not reach the sky inside the fitted range: rings "
                f"{r_in:.0f}-{r_out:.0f} px span {span:.1f} scale lengths (h = {h:.0f} px), "
                f"fewer than {min_scale_lengths:g}, so the disc's tail and the sky G can't "
                "be told apart")
    if g_err > max_offset_error * pixel_noise:
        reasons.append(f"G is uncertain by {g_err:.2f}, {g_err / pixel_noise:.2f} x a sky "
                       f"pixel's noise (at most {max_offset_error:g} x)")
    return reasons


def check_against_masked(g, g_err, masked_level, masked_err, *, pixel_noise, galaxy_light=0.0,
                         nsig=MAX_MASKED_ERRORS, max_diff=MAX_MASKED_DIFF):
    """A reason the radial sky ``G`` disagrees with a masked-sky estimate, or ''.

    The masked sky (a clipped median of the pixels no source covers) is not the sky
    where a galaxy fills the field: those pixels hold its undetected outskirts, and
    in a frame the galaxy fills, the detection threshold itself sits on the galaxy,
    so "undetected" can be a lot of light. The estimate is biased *high*, by more
    than any fixed bound. What the fit says is how much: the median, over those same
    pixels, of its galaxy model ``A f(r)`` (``galaxy_light``). So ``G`` plus that
    light must come out at the masked level:

    * above it by more than the tolerance (``G`` + light > masked): the fit took
      galaxy light for sky, ``G`` is too high (a fit made where the disc has faded,
      ``A`` and ``G`` trading off);
    * below it: the fitted tail falls too fast, or ``G`` is too low.

    The tolerance is ``nsig`` times the combined error, or ``max_diff`` times a sky
    pixel's noise, whichever is larger (the median of a tail plus noise is not
    exactly the tail's median plus the noise's, and stars' faint wings add a little).
    With ``galaxy_light = 0`` (no model), this is the plain comparison.

    Parameters
    ----------
    g, g_err : float
        The radial fit's sky and its uncertainty.
    masked_level, masked_err : float
        The masked-sky estimate and its uncertainty.
    pixel_noise : float
        A sky pixel's noise.
    galaxy_light : float
        The fit's galaxy model, median over the pixels of the masked estimate.
    nsig, max_diff : float
        The tolerance, in errors and in pixel noise.

    Returns
    -------
    str
        The reason, or '' when they agree.

    Examples
    --------
    >>> check_against_masked(1000.0, 1.0, 1003.0, 0.5, pixel_noise=30.0, galaxy_light=2.0)
    ''
    >>> check_against_masked(1020.0, 1.0, 1003.0, 0.5, pixel_noise=30.0)[:24]
    'the radial sky G = 1020.'
    """
    if not np.isfinite(masked_level):
        return ""
    expected = g + galaxy_light
    diff = expected - masked_level
    err = float(np.hypot(g_err, masked_err if np.isfinite(masked_err) else 0.0))
    tol = max(nsig * err, max_diff * pixel_noise)
    if abs(diff) <= tol:
        return ""
    where = "above" if diff > 0 else "below"
    return (f"the radial sky G = {g:.1f} plus the galaxy's modelled light in the unmasked "
            f"pixels ({galaxy_light:.1f}) is {abs(diff):.1f} {where} the masked-sky level "
            f"{masked_level:.1f} ({abs(diff) / pixel_noise:.2f} pixel sigma; at most "
            f"{tol:.1f}, the larger of {nsig:g} errors and {max_diff:g} sigma)"
            + (": G took galaxy light for sky" if diff > 0 else ": the fitted tail falls "
               "too fast or G is too low"))


@dataclass
class SkyChoice:
    """The sky of one frame: the model subtracted, how it was made and why."""

    model: np.ndarray          # the sky at every pixel
    method: str                # 'radial' or the masked-sky method ('box', 'plane', ...)
    reason: str                # why this method (the fallback's reason, or '-')
    offset: float = float("nan")        # radial G (NaN when no radial fit was made)
    offset_error: float = float("nan")
    masked_level: float = float("nan")  # the masked sky: clipped median of the unmasked pixels
    scale_length: float = float("nan")  # h of the radial fit, pixels
    rmin: float = float("nan")          # where the radial fit started, pixels
    profile: RadialProfile | None = None
    sources: np.ndarray | None = None   # the source mask the masked sky left out (dilated)


def fit_radial_from_galaxy(data, center, *, bad=None, axis_ratio=1.0, theta_deg=0.0,
                           rmin_h=1.0, rmin=None, start=5.0, iterations=4, width=2.0):
    """A radial sky whose fit starts at ``rmin_h`` scale lengths of the galaxy itself.

    A fixed start (a fraction of the frame's width) suits one galaxy on one frame
    size: on a larger frame or a smaller galaxy it lies where the disc has already
    faded, and the fit is unconstrained. Here a first fit from ``start`` pixels gives
    the scale length ``h``; the fit is repeated from ``rmin_h * h`` until ``h``
    settles (the bulge, left inside, then no longer steepens it).

    Parameters
    ----------
    data, center, bad, axis_ratio, theta_deg, width
        As for `radial_sky`; the rings reach the farthest corner of the frame.
    rmin_h : float
        Where the fit starts, in scale lengths.
    rmin : float, optional
        A fixed start in pixels instead (no iteration).
    start : float
        Where the first fit starts, pixels (past the seeing core).
    iterations : int
        Most fits made.

    Returns
    -------
    offset : float
    info : `RadialProfile`
    """
    ny, nx = np.shape(data)
    corners = np.array([[0, 0], [nx - 1, 0], [0, ny - 1], [nx - 1, ny - 1]], float)
    rmax = float(np.max(np.hypot(*(corners - np.asarray(center, float)).T))) / axis_ratio
    kw = dict(bad=bad, axis_ratio=axis_ratio, theta_deg=theta_deg, width=width)
    kw["rings"] = ring_profile(data, center, rmax=rmax, **kw)  # the same rings for every fit
    if rmin is not None:
        return radial_sky(data, center, rmax=rmax, rmin=float(rmin), **kw)
    r0 = float(start)
    g, info = radial_sky(data, center, rmax=rmax, rmin=r0, **kw)
    for _ in range(iterations - 1):
        h = scale_length(info)
        r1 = float(np.clip(rmin_h * h, start, 0.5 * rmax))
        if not np.isfinite(r1) or abs(r1 - r0) < max(0.05 * r0, width):
            break
        r0 = r1
        g, info = radial_sky(data, center, rmax=rmax, rmin=r0, **kw)
    return g, info


def sky_for_frame(data, bad=None, *, geo=None, choice="auto", sky_method="box", box_size=64,
                  filter_size=3, nsigma=2.0, npixels=10, dilate=5, rmin_h=1.0, rmin=None,
                  min_scale_lengths=MIN_SCALE_LENGTHS, max_offset_error=MAX_OFFSET_ERROR,
                  segm=None):
    """The sky of one frame, by the method the frame supports, with the reason.

    With ``choice='auto'``: a frame with a galaxy (``geo``) gets the radial-profile
    sky ``G`` (`fit_radial_from_galaxy`) if the fit passes `check_radial_fit` and
    agrees with the masked sky (`check_against_masked`); otherwise, and for a frame
    with no galaxy, the masked-sky model ``sky_method``, with the reason.
    ``choice='radial'`` takes ``G`` whatever the checks say (the reasons are still
    returned), ``choice='sky_method'`` never fits.

    Parameters
    ----------
    data : 2-D array
        The calibrated frame.
    bad : bool array, optional
        Bad pixels.
    geo : dict, optional
        The galaxy: ``x``, ``y`` (0-based pixel), ``axis_ratio``, ``theta_deg``.
    choice : {'auto', 'radial', 'sky_method'}
    sky_method, box_size, filter_size
        The masked-sky model (`sky_model`).
    nsigma, npixels, dilate
        The source mask (`source_mask`).
    rmin_h, rmin
        Where the radial fit starts (`fit_radial_from_galaxy`).
    min_scale_lengths, max_offset_error
        The fit's checks (`check_radial_fit`).
    segm : `~photutils.segmentation.SegmentationImage`, optional
        The frame's sources from `detect` (with ``nsigma``, ``npixels``), if found
        already (e.g. by `find_galaxy`): the frame is then not searched again.

    Returns
    -------
    `SkyChoice`
    """
    if choice not in ("auto", "radial", "sky_method"):
        msg = f"choice must be 'auto', 'radial' or 'sky_method', got {choice!r}"
        raise ValueError(msg)
    data, bad = _as_image(data, bad)
    if segm is None:                    # once for both masks
        segm = detect(data, bad=bad, nsigma=nsigma, npixels=npixels)
    src = _mask_of(segm, data.shape, dilate=dilate)
    masked, masked_rms, masked_note = None, float("nan"), ""
    try:
        masked, rms = sky_model(data, bad=bad | src, method=sky_method, box_size=box_size,
                                filter_size=filter_size, rms_image=False)
        masked_rms = float(np.median(rms))
    except ReduxError as exc:
        if geo is None or choice == "sky_method":
            raise
        masked_note = str(exc)
    if geo is None or choice == "sky_method":
        why = "no galaxy in the frame" if geo is None else "galaxy_sky = sky_method"
        return SkyChoice(masked, sky_method, why, masked_level=float(np.median(masked)),
                         sources=src)
    centre = (geo["x"], geo["y"])
    others = _mask_of(segm, data.shape, dilate=dilate, except_at=centre)
    noise = masked_rms if np.isfinite(masked_rms) else float(mad_std(data[~(bad | src)]))
    # the check's masked sky: one clipped median of the pixels no source covers (a box
    # model interpolates over the masked galaxy from boxes full of its outskirts)
    try:
        level = float(sky_model(data, bad=bad | src, method="constant")[0][0, 0])
    except ReduxError:
        level = float("nan")
    n_sky = max(int((~(bad | src)).sum()), 1)
    try:
        g, info = fit_radial_from_galaxy(data, centre, bad=bad | others,
                                         axis_ratio=geo.get("axis_ratio", 1.0),
                                         theta_deg=geo.get("theta_deg", 0.0),
                                         rmin_h=rmin_h, rmin=rmin)
    except ReduxError as exc:
        if choice == "radial" or masked is None:
            raise
        return SkyChoice(masked, sky_method, f"radial fit failed: {exc}", masked_level=level,
                         sources=src)
    reasons = check_radial_fit(info, pixel_noise=noise, min_scale_lengths=min_scale_lengths,
                               max_offset_error=max_offset_error)
    free = ~(bad | src)
    r = elliptical_radius(data.shape, centre, axis_ratio=geo.get("axis_ratio", 1.0),
                          theta_deg=geo.get("theta_deg", 0.0))
    light = float(np.median(info.model(r[free]))) - g if free.any() else 0.0
    disagree = check_against_masked(g, info.offset_error, level, 1.2533 * noise / np.sqrt(n_sky),
                                    pixel_noise=noise, galaxy_light=light)
    reasons += [disagree] if disagree else []
    facts = dict(offset=g, offset_error=info.offset_error, masked_level=level,
                 scale_length=scale_length(info), rmin=info.rmin, profile=info, sources=src)
    if reasons and choice == "auto" and masked is not None:
        return SkyChoice(masked, sky_method, "radial fit not trusted: " + "; ".join(reasons),
                         **facts)
    why = "galaxy_sky = radial" if choice == "radial" else "radial fit passed its checks"
    if reasons:
        why += " (checks failed: " + "; ".join(reasons) + ")"
    if masked is None:
        why += f" (no masked sky: {masked_note})"
    return SkyChoice(np.full(data.shape, g), "radial", why, **facts)


def rate_outliers(names, rates, errors=None, *, max_scatter=MAX_RATE_SCATTER, nsig=5.0):
    """Frames of one filter whose sky rate disagrees with the others': name -> reason.

    Each rate is compared with the median of the *other* frames' rates; it is an
    outlier when it differs by more than ``max_scatter`` of that median and, when
    ``errors`` are given, by more than ``nsig`` of its error as well (a sky that
    changes a little through the night is not an outlier).

    Parameters
    ----------
    names : sequence of str
        The frames.
    rates : sequence of float
        Their sky rates (sky level / exposure time), e.g. e-/s per pixel.
    errors : sequence of float, optional
        Their uncertainties, in the unit of ``rates``.
    max_scatter : float
        Largest relative difference allowed.
    nsig : float
        Smallest significant difference, in errors.

    Returns
    -------
    dict
        Outlying frame -> a sentence saying how far it is from the others.

    Examples
    --------
    >>> rate_outliers(["a", "b", "c", "d"], [10.0, 10.2, 9.9, 25.0])
    {'d': 'sky rate 25 is +150 % from the median 10 of the other frames of its filter (at most 20 %)'}
    """
    rates = np.asarray(rates, float)
    errors = np.zeros_like(rates) if errors is None else np.asarray(errors, float)
    found = {}
    if len(rates) < 2:
        return found
    for i, name in enumerate(names):
        rest = np.delete(rates, i)
        rest = rest[np.isfinite(rest)]
        if not rest.size or not np.isfinite(rates[i]):
            continue
        ref = float(np.median(rest))
        diff = rates[i] - ref
        err = errors[i] if np.isfinite(errors[i]) else 0.0
        if abs(diff) > max_scatter * abs(ref) and abs(diff) > nsig * err:
            found[str(name)] = (f"sky rate {rates[i]:.3g} is {100 * diff / ref:+.0f} % from the "
                                f"median {ref:.3g} of the other frames of its filter (at most "
                                f"{100 * max_scatter:g} %)")
    return found
