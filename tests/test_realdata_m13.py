"""Registering and stacking faint frames whose detector defects outshine their stars.

Real frames: five 5 s light frames of the globular cluster M13 in a blue filter, taken
12 s apart on 2013-05-05 with a small amateur camera (Orion SSDSI, 1392 x 1040) and
written by MaxIm DL Essentials (already dark/flat calibrated, ``PEDESTAL=-500``, no WCS),
from ``../shared/realdata/m13_blue_lights`` (skipped, saying so, when absent).

They are hard: the sky is ~513 ADU with a noise of ~23 ADU, star peaks are only ~100 ADU
above it, the read-out adds horizontal banding, and hot pixels hundreds of ADU bright sit
at the same detector position in every frame. The mount was not tracking well: the
stars drift ~12 px in x per frame (about 46 px over the five frames, and 3-4 px in y),
and are trailed by ~5 px within each exposure. `find_stars` finds no star in them; a
plain cross-correlation of the frames locks onto the hot pixels and banding at zero
shift. `register_frame` falls back to `register_xcorr`, which correlates only the
frames' sources (`correlation_image`).

The synthetic tests at the top build frames like these with a known shift, so that the
same behaviour is checked against a right answer wherever the real frames are absent.
"""

import itertools

import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import mad_std, sigma_clipped_stats
from scipy import ndimage

from redux_helpers.demo import gauss_stamps
from redux_helpers.register import (
    RegistrationError,
    Transform,
    find_stars,
    register_frame,
    register_stars,
    register_xcorr,
)
from redux_helpers.stack import combine_stack, resample

SKY, NOISE = 513.0, 23.0


# ---- synthetic frames made like the M13 ones -------------------------------------------
def _detector(shape, seed=3):
    """What a frame has at a fixed place on the chip: hot pixels and row banding.

    Half the hot pixels leak charge into their right-hand neighbour, as a real CCD's
    often do: a single hot pixel is too sharp for a star finder, a pair is not.
    """
    rng = np.random.default_rng(seed)
    fixed = np.zeros(shape)
    hy, hx = rng.integers(0, shape[0], 400), rng.integers(0, shape[1] - 1, 400)
    amp = rng.uniform(300, 5000, 400)
    fixed[hy, hx] += amp
    fixed[hy[::2], hx[::2] + 1] += 0.5 * amp[::2]
    fixed += rng.normal(0, 4.0, shape[0])[:, None]          # read-out banding
    return fixed, np.c_[hx, hy]


def _faint_frame(shift=(0.0, 0.0), *, seed=0, shape=(300, 400), stars=True):
    """Sky + faint stars seen shifted by ``shift`` (frame -> reference) + detector + noise."""
    rng = np.random.default_rng(11)                          # the same sky every time
    n = 60
    sx, sy = rng.uniform(-60, shape[1] + 60, n), rng.uniform(-60, shape[0] + 60, n)
    peak = rng.uniform(30, 150, n)
    img = np.full(shape, SKY)
    if stars:
        sigma = 1.8
        gauss_stamps(img, sx - shift[0], sy - shift[1], peak * 2 * np.pi * sigma ** 2, sigma)
    fixed, _ = _detector(shape)
    return img + fixed + np.random.default_rng(100 + seed).normal(0, NOISE, shape)


def test_cross_correlation_follows_the_sky_not_the_detector():
    true = (11.73, -0.88)
    ref, frame = _faint_frame(seed=1), _faint_frame(true, seed=2)
    found = register_xcorr(frame, ref)
    assert found.method == "cross-correlation"
    assert np.hypot(*(found.offset - true)) < 0.1
    # the trap it avoids: the frames as they are correlate best at zero shift
    from skimage.registration import phase_cross_correlation

    naive, _, _ = phase_cross_correlation(ref - SKY, frame - SKY, normalization=None)
    assert np.hypot(*naive) < 1.0


def test_register_frame_places_a_faint_frame():
    """No usable star pattern: register_frame says so and cross-correlates."""
    true = (-24.31, 3.42)
    ref, frame = _faint_frame(seed=1), _faint_frame(true, seed=3)
    found = register_frame(np.c_[find_stars(frame)[:2]], np.c_[find_stars(ref)[:2]],
                           image=frame, ref_image=ref)
    assert np.hypot(*(found.apply(0.0, 0.0) - np.array(true))) < 0.1, found.method


def test_blank_frame_is_refused():
    """A frame of sky and detector defects only (clouds): no shift is made up for it."""
    ref, blank = _faint_frame(seed=1), _faint_frame(seed=4, stars=False)
    with pytest.raises(RegistrationError, match="no clear common pattern"):
        register_xcorr(blank, ref)
    with pytest.raises(RegistrationError):
        register_frame(np.c_[find_stars(blank)[:2]], np.c_[find_stars(ref)[:2]],
                       image=blank, ref_image=ref)


def test_hot_pixels_are_not_stars():
    frame = _faint_frame(seed=1)
    _, hot = _detector(frame.shape)

    def on_hot(x, y):
        return int(np.sum(np.min(np.hypot(x[:, None] - hot[:, 0], y[:, None] - hot[:, 1]),
                                 axis=1) < 1.5))

    x, y, _ = find_stars(frame)
    xs, ys, _ = find_stars(frame, despike=False)
    assert on_hot(xs, ys) >= 20          # without despiking, hot pixels pass for stars
    assert on_hot(x, y) == 0


def test_a_three_star_match_is_not_trusted(monkeypatch):
    """Three points always match some triangle of the reference: too few to be a match."""
    from redux_helpers import register

    rng = np.random.default_rng(5)
    ref = rng.uniform(0, 300, (20, 2))
    src = ref[:3] + [4.2, -7.9]
    # the pattern matcher offers the three pairs (as astroalign does, now and then, for
    # three noise peaks); register_stars must not take them
    monkeypatch.setattr(register.matching, "match_stars", lambda s, r: (src, ref[:3], 1))
    with pytest.raises(RegistrationError, match="too few stars to trust"):
        register_stars(src, ref)


# ---- the real frames ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def m13(realdata):
    """The five frames (float ADU) and each one's transform to the first, by register_frame."""
    files = sorted((realdata / "m13_blue_lights").glob("*.fits.gz"))
    if len(files) != 5:
        pytest.skip(f"expected 5 M13 frames in {realdata / 'm13_blue_lights'}, found {len(files)}")
    frames = [fits.getdata(f).astype(np.float64) for f in files]
    ref_xy = np.c_[find_stars(frames[0])[:2]]
    found = [Transform(method="reference")]
    for img in frames[1:]:
        found.append(register_frame(np.c_[find_stars(img)[:2]], ref_xy, image=img,
                                    ref_image=frames[0]))
    return frames, found


def _clean(img):
    """3 x 3 running median (hot pixels gone) minus each row's median (banding gone)."""
    m = ndimage.median_filter(img, size=3)
    return m - np.median(m, axis=1)[:, None]


def _centroid(img, x, y, *, sigma=3.5, half=10, iters=20):
    """Gaussian-weighted centre of mass, iterated, above the median of a box around it."""
    for _ in range(iters):
        xi, yi = int(round(x)), int(round(y))
        yy, xx = np.mgrid[yi - half:yi + half + 1, xi - half:xi + half + 1]
        level = np.median(img[yi - 2 * half:yi + 2 * half + 1, xi - 2 * half:xi + 2 * half + 1])
        w = (img[yi - half:yi + half + 1, xi - half:xi + half + 1] - level) \
            * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
        x, y = float((w * xx).sum() / w.sum()), float((w * yy).sum() / w.sum())
    return x, y


@pytest.mark.realdata
def test_m13_shifts_agree_with_star_centroids(m13):
    """The shifts agree with the mean shift of the frame's isolated stars, centred by hand.

    Independent of the helpers: the stars are the brightest isolated peaks of frame 1
    (smoothed, away from the edges); a frame's integer shift is the one that puts most
    smoothed light on them; each star is then centred in both frames. These stars are
    faint and trailed, so one star's centre scatters by 1-2 px: the mean of ~30 is good
    to ~0.3 px, and that (3 standard errors) is the tolerance. The shifts' own precision
    is tested by `test_m13_registration_closes`.
    """
    frames, found = m13
    clean = [_clean(f) for f in frames]
    smooth = [ndimage.gaussian_filter(c, 2.0) for c in clean]
    s0 = smooth[0]
    ny, nx = s0.shape
    peaks = (s0 == ndimage.maximum_filter(s0, size=31)) & (s0 > 6 * mad_std(s0))
    iy, ix = np.nonzero(peaks)
    inner = (ix > 100) & (ix < nx - 100) & (iy > 100) & (iy < ny - 100)
    order = np.argsort(s0[iy[inner], ix[inner]])[::-1]
    stars = np.c_[ix[inner][order], iy[inner][order]][:40]
    assert len(stars) >= 15
    ref_pos = np.array([_centroid(clean[0], x, y) for x, y in stars])
    for k in range(1, 5):
        score = {(dx, dy): smooth[k][stars[:, 1] + dy, stars[:, 0] + dx].sum()
                 for dx in range(-60, 61) for dy in range(-60, 61)}
        cdx, cdy = max(score, key=score.get)
        pos = np.array([_centroid(clean[k], x + cdx, y + cdy) for x, y in ref_pos])
        d = ref_pos - pos                       # frame k -> frame 1, star by star
        stats = [sigma_clipped_stats(d[:, i], sigma=2.5) for i in (0, 1)]
        mean = np.array([s[0] for s in stats])
        error = np.array([s[2] for s in stats]) / np.sqrt(len(d))
        shift = np.array(found[k].apply(0.0, 0.0))
        assert found[k].method == "cross-correlation"
        assert np.all(np.abs(shift - mean) < np.maximum(3 * error, 0.15)), \
            f"frame {k + 1}: registered {shift}, stars say {mean} +/- {error}"


@pytest.mark.realdata
def test_m13_registration_closes(m13):
    """Frame j -> k measured directly equals j -> 1 -> k to 0.15 px rms (precision)."""
    frames, found = m13
    off = [np.array(t.apply(0.0, 0.0)) for t in found]
    miss = []
    for j, k in itertools.combinations(range(1, 5), 2):
        direct = register_xcorr(frames[k], frames[j]).offset   # k -> j
        miss.append(direct - (off[k] - off[j]))
    rms = np.sqrt(np.mean(np.square(miss), axis=0))
    assert np.all(rms < 0.15), rms
    assert 11 < off[1][0] < 12.5 and 44 < off[4][0] < 47      # the drift, roughly


@pytest.mark.realdata
def test_m13_stack_drops_what_stays_on_the_detector_or_hits_one_frame(m13):
    """Registered and sigma-clipped, the stack loses hot pixels and cosmic rays.

    These frames were dark-subtracted by MaxIm DL, so what is left of the hot pixels is
    warm: ~90 ADU (4 sigma) above their neighbours, but in all five frames at the same
    detector position (noise does that by chance ~1e-8 times per pixel). A plain mean
    of the frames as they are keeps them (~10 sigma of the mean's noise); in the stack
    each lands on other sky in each frame and averages away. A cosmic ray (> 10 sigma,
    in one frame) must be rejected outright.
    """
    frames, found = m13
    ny, nx = frames[0].shape
    excess = [f - ndimage.median_filter(f, size=5) for f in frames]
    noise = [mad_std(e) for e in excess]
    z = np.array([e / s for e, s in zip(excess, noise, strict=True)])
    edge = np.zeros((ny, nx), bool)
    edge[3:-3, 3:-3] = True
    warm = np.all(z > 3, axis=0) & edge
    spike = (np.sum(z > 10, axis=0) == 1) & edge
    assert warm.sum() >= 10 and spike.sum() >= 1

    plain = np.mean(frames, axis=0)     # not registered: the warm pixels add up
    kept = (plain - ndimage.median_filter(plain, size=5)) / (np.mean(noise) / np.sqrt(5))
    assert np.median(kept[warm]) > 6

    shifted = [resample(f, np.full(f.shape, s ** 2), None, t, (ny, nx), exptime=5.0)
               for f, s, t in zip(frames, noise, found, strict=True)]
    s = combine_stack(shifted, sigma=5.0, method="mean")
    local = ndimage.median_filter(np.nan_to_num(s.data, nan=float(np.nanmedian(s.data))), size=5)
    stack_z = (s.data - local) / s.uncertainty

    def on_stack(where, k):
        qx, qy = found[k].apply(*np.nonzero(where)[::-1])
        qx, qy = np.round(qx).astype(int), np.round(qy).astype(int)
        inside = (qx >= 2) & (qx < nx - 2) & (qy >= 2) & (qy < ny - 2)
        return qy[inside], qx[inside]

    for k in range(5):
        qy, qx = on_stack(warm, k)
        assert np.all(stack_z[qy, qx] < 5), f"frame {k + 1}: a warm pixel survives"
        qy, qx = on_stack(spike & (z[k] > 10), k)
        if len(qy):
            assert np.all(stack_z[qy, qx] < 5), f"frame {k + 1}: a cosmic ray survives"
            near = ndimage.maximum_filter(s.rejected, size=3)[qy, qx]
            assert np.all(near >= 1), f"frame {k + 1}: a cosmic ray was not rejected"


@pytest.mark.realdata
def test_m13_pedestal_and_noise_model_through_03(realdata, tmp_path):
    """The frames as MaxIm DL wrote them (PEDESTAL = -500), from a manifest with `raw_dir:`,
    a filter and a guessed gain and read noise, as a new user writes it.

    By hand: the file's values plus the PEDESTAL are the camera's ADU (a sky of ~14, not
    ~514); on an empty corner the scatter of horizontal neighbours' differences over
    sqrt(2) is one pixel's noise, and with gain 1 the read noise is
    sqrt(scatter^2 - sky) (~23.8 e-). A read noise of 10 e- stops 03 with the value that
    fits within 3 % of the hand's; with that value 03 runs and flags < 0.2 % of the pixels
    (4.6 % with the pedestal left in and 10 e-: noise taken for hits)."""
    from redux_helpers import fitsio
    from redux_helpers.errors import ReduxError
    from redux_helpers.runner import run_target

    raw_dir = realdata / "m13_blue_lights"
    data, _ = fitsio.read_frame(raw_dir / "M13_blue_0001.fits.gz")
    by_hand = fits.getdata(raw_dir / "M13_blue_0001.fits.gz").astype(np.float64) - 500.0
    assert np.array_equal(data, by_hand)
    corner = by_hand[100:300, 1000:1300]
    sky = float(np.median(corner))
    scatter = float(mad_std(np.diff(corner, axis=1)) / np.sqrt(2))
    rn_hand = np.sqrt(scatter ** 2 - sky)
    assert 5 < sky < 25 and 20 < rn_hand < 28

    def manifest(read_noise):
        path = tmp_path / "m13.yaml"
        path.write_text(f"targets:\n  m13:\n    raw_dir: {raw_dir}\n"
                        "    header_overrides: {'*': {FILTER: B}}\n"
                        f"    gain: 1.0\n    read_noise: {read_noise}\n")
        return path

    with pytest.raises(ReduxError) as err:
        run_target("m13", manifest=manifest(10.0), products=tmp_path / "p", html=False,
                   only="00,01,02,03")
    text = str(err.value)
    assert "M13_blue_0001.fits.gz" in text and "under `m13:`" in text
    fit = float(text.split("`read_noise: ")[1].split("`")[0])
    assert abs(fit / rn_hand - 1) < 0.03, (fit, rn_hand)
    run_target("m13", manifest=manifest(fit), products=tmp_path / "p", html=False,
               only="00,01,02,03")
    flagged = fitsio.read_table(tmp_path / "p" / "m13" / "03_cosmics" / "cosmics.ecsv")
    assert len(flagged) == 5 and np.max(flagged["fraction"]) < 0.002, list(flagged["fraction"])
