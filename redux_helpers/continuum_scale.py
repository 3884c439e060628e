"""The continuum scale: how much of the broad-band image to take from the Hα image.

A source without an Hα line gives ``s`` e-/s in the Hα filter for each e-/s in the
continuum filter (R): ``s`` holds the two filters' widths and throughputs. Three ways to
know it, each independent of the others:

* `from_stars`: the field stars' flux ratios (stars have no Hα line, to a few per cent);
  with few stars the estimator must not let one star decide, and its error must be the
  one the stars' scatter allows;
* `from_image`: the scale that best nulls the line-free light of the image itself (the
  galaxy's and the stars' continuum), the way many Hα surveys find it;
* `from_calibration`: the two stacks' flux calibrations (``PHOTFLAM`` of each, from 08's
  standard stars), for a source of flat f_λ; or, with only the filters' widths known,
  their ratio.

`choose` reports them side by side, takes one with a reason, widens its error so it
covers a disagreement with the others, and says whether they agree.

>>> r = from_stars([80.0, 161.0, 239.0, 1210.0], [2.0, 3.0, 4.0, 12.0],
...                [1000.0, 2000.0, 3000.0, 15000.0], [10.0, 14.0, 17.0, 40.0], min_snr=10)
>>> round(r["scale"], 3), r["n_used"]
(0.08, 4)
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy import stats

from .errors import ReduxError

log = logging.getLogger(__name__)

#: Small-sample factors making 1.4826 MAD an unbiased sigma for n normal values.
_MAD_SMALL_N = {3: 1.486, 4: 1.362, 5: 1.218, 6: 1.191, 7: 1.138, 8: 1.127, 9: 1.102}
#: Relative systematic error of a scale from the flux calibration: real stars and
#: galaxies are not flat in f_λ; their R - Hα colours spread over ~0.25 mag (on the demo
#: night the stars' scale is 0.0795 and the flat-spectrum prediction 0.105).
CALIBRATION_REL_ERR = 0.25
#: ... and from the filters' widths alone (equal peak throughput assumed).
WIDTHS_REL_ERR = 0.30
#: Two estimates disagree when further apart than this many combined sigma.
AGREE_SIGMA = 2.0


def robust_sigma(x) -> float:
    """Normal-consistent MAD of ``x`` with the small-sample correction."""
    x = np.asarray(x, float)
    n = x.size
    factor = _MAD_SMALL_N.get(n, n / (n - 0.8)) if n >= 3 else 1.0
    return 1.482602 * factor * float(np.median(np.abs(x - np.median(x))))


def _random_effects(x, err):
    """Mean of values with errors ``err`` and an intrinsic scatter τ fitted to them.

    DerSimonian-Laird: τ² is the scatter in excess of the errors; each value weighs
    1 / (err² + τ²), so that where the stars' colours spread more than their errors, no
    single bright star decides. Returns (mean, its error, τ).
    """
    w = 1.0 / err ** 2
    mean_fixed = float(np.sum(w * x) / np.sum(w))
    q = float(np.sum(w * (x - mean_fixed) ** 2))
    denom = float(np.sum(w) - np.sum(w ** 2) / np.sum(w))
    tau2 = max((q - (x.size - 1)) / denom, 0.0) if denom > 0 else 0.0
    wr = 1.0 / (err ** 2 + tau2)
    mean = float(np.sum(wr * x) / np.sum(wr))
    return mean, float(1.0 / math.sqrt(np.sum(wr))), math.sqrt(tau2)


def _ratios(flux_ha, flux_ha_unc, flux_r, flux_r_unc):
    fha, eha, fr, er = (np.asarray(a, dtype=float).ravel() for a in
                        (flux_ha, flux_ha_unc, flux_r, flux_r_unc))
    if not fha.size == eha.size == fr.size == er.size:
        msg = (f"continuum scale: the four star arrays differ in length "
               f"({fha.size}, {eha.size}, {fr.size}, {er.size}); give one value per star")
        raise ReduxError(msg)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = fha / fr
        ratio_errs = np.abs(ratios) * np.hypot(eha / fha, er / fr)
        snr = np.fmin(fha / eha, fr / er)
    ok = np.isfinite(ratios) & np.isfinite(ratio_errs) & (ratio_errs > 0) & (eha > 0) & (er > 0)
    return ratios, ratio_errs, np.where(ok, snr, -np.inf)


def from_stars(flux_ha, flux_ha_unc, flux_r, flux_r_unc, *, clip=3.0, min_snr=20.0, min_stars=5,
               floor_snr=5.0, n_boot=2000, seed=0) -> dict:
    """The continuum scale from the stars' flux ratios, with an honest error.

    Parameters
    ----------
    flux_ha, flux_ha_unc, flux_r, flux_r_unc : array_like
        The same stars' fluxes and 1-sigma errors in the Hα and continuum stacks (any
        one unit per filter, e.g. e-/s); NaN for a star not measured.
    clip : float
        A star is rejected (an emission-line star, a star on an HII region) when its
        ratio is further from the others' median than they allow, by at least ``clip``
        of their sigma (see `_reject_outliers`).
    min_snr : float
        Stars need this S/N in *both* stacks: a faint star's ratio is noise, not colour.
    min_stars, floor_snr : int, float
        While fewer than ``min_stars`` stars reach ``min_snr``, the threshold is lowered
        (to 10, then to ``floor_snr``): a faint star with its error weighed in is better
        than a scale from three stars.
    n_boot, seed : int
        Bootstrap resamples of the stars (their spread is one of the error's floors).

    Returns
    -------
    dict
        ``scale``: the random-effects mean of the kept ratios (weights
        ``1 / (err² + τ²)``, τ the colour scatter in excess of the errors);
        ``scale_err``: the largest of the mean's formal error, the bootstrap spread over
        the stars, and ``scatter / sqrt(n)``, never smaller than the stars allow, times
        Student's t for a 68 % interval with ``n - 1`` degrees of freedom;
        ``scatter`` (robust sigma of the kept ratios), ``tau``, ``n_used``, ``n_total``,
        ``min_snr`` (the threshold used), ``used`` (bool per star), ``ratios``,
        ``ratio_errs``, ``method``.

    Raises
    ------
    ReduxError
        Fewer than 3 stars with S/N above ``floor_snr``.
    """
    ratios, ratio_errs, snr = _ratios(flux_ha, flux_ha_unc, flux_r, flux_r_unc)
    thresholds = sorted({float(min_snr), min(float(min_snr), 10.0),
                         min(float(min_snr), float(floor_snr))}, reverse=True)
    for threshold in thresholds:
        good = snr > threshold
        if good.sum() >= min_stars:
            break
    if good.sum() < 3:
        msg = (f"only {int(good.sum())} of {ratios.size} stars have S/N > {threshold:g} in both "
               "stacks; the continuum scale from the stars needs at least 3. Measure more (or "
               "fainter) stars, or give the scale instead (contsub: {scale: ...} in the "
               "manifest, e.g. from the filters' transmission curves or a previous night)")
        raise ReduxError(msg)
    used = _reject_outliers(ratios, ratio_errs, good, clip=clip)
    x, e = ratios[used], ratio_errs[used]
    n = int(used.sum())
    scale, formal, tau = _random_effects(x, e)
    sigma = robust_sigma(x)
    spread = float(np.std(x, ddof=1)) if n > 1 else 0.0
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(n_boot, n))
    boot = np.array([_random_effects(x[p], e[p])[0] for p in picks])
    boot_err = float(np.std(boot))
    # with few stars their scatter is itself uncertain: a 1-sigma (68 %) interval is a
    # Student-t one, wider by t(0.841, n - 1) (1.32 for 3 stars, 1.14 for 5, ~1 for 30)
    t68 = float(stats.t.ppf(stats.norm.cdf(1.0), n - 1)) if n > 1 else 1.0
    scale_err = t68 * max(formal, boot_err, max(sigma, spread) / math.sqrt(n))
    log.info("continuum scale %.5f ± %.5f from %d of %d stars (S/N > %g; scatter %.2f %%)",
             scale, scale_err, n, ratios.size, threshold, 100 * sigma / scale)
    return {"scale": float(scale), "scale_err": float(scale_err), "scatter": float(sigma),
            "tau": float(tau), "n_used": n, "n_total": int(ratios.size),
            "min_snr": float(threshold), "used": used, "ratios": ratios,
            "ratio_errs": ratio_errs, "formal_err": float(formal), "bootstrap_err": boot_err,
            "method": (f"random-effects mean of {n} clipped star ratios (S/N > {threshold:g}); "
                       "error the largest of its formal error, the bootstrap over the stars "
                       "and the scatter / sqrt(n), times Student's t")}


def _reject_outliers(x, err, good, *, clip=3.0, alpha=0.05):
    """Drop, one at a time, the star least like the others, while it is an outlier.

    Star i is compared with the others' median, in units of what they allow:
    ``sqrt(s² (1 + 1/m) + err_i²)``, with ``s`` the others' spread (standard deviation
    for fewer than 10, else the robust sigma) and ``m`` their number. It is an outlier
    beyond Student's t at ``1 - alpha / (2 n)`` (a test of n stars at once) with m - 1
    degrees of freedom, and never within ``clip``: with three stars almost nothing is
    an outlier (they can't say what is normal), with thirty a star 3.4 sigma off is.
    """
    used = good.copy()
    while used.sum() > 3:
        idx = np.flatnonzero(used)
        z = np.empty(idx.size)
        for k, i in enumerate(idx):
            others = x[idx[idx != i]]
            m = others.size
            spread = robust_sigma(others) if m >= 10 else float(np.std(others, ddof=1))
            z[k] = abs(x[i] - np.median(others)) / math.sqrt(spread ** 2 * (1 + 1 / m)
                                                             + err[i] ** 2)
        limit = max(clip, float(stats.t.ppf(1 - alpha / (2 * idx.size), idx.size - 2)))
        worst = int(np.argmax(z))
        if z[worst] <= limit:
            break
        used[idx[worst]] = False
    return used


def _fit_line(h, r, w):
    """Weighted least squares of h = s r + c; returns (s, c)."""
    sw, sr, sh = np.sum(w), np.sum(w * r), np.sum(w * h)
    srr, srh = np.sum(w * r * r), np.sum(w * r * h)
    det = sw * srr - sr * sr
    s = (sw * srh - sr * sh) / det
    return float(s), float((sh - s * sr) / sw)


def _null_scale(h, hu, r, ru, *, start, clip, maxiters=20):
    """The s (and offset) of h = s r + c over pixels, line emitters clipped above."""
    s = start
    keep = np.ones(h.size, bool)
    c = 0.0
    for _ in range(maxiters):
        sig = np.sqrt(hu ** 2 + (s * ru) ** 2)
        s, c = _fit_line(h[keep], r[keep], 1.0 / sig[keep] ** 2)
        pull = (h - s * r - c) / np.sqrt(hu ** 2 + (s * ru) ** 2)
        # line emission adds to h only: clip far above, and only gross outliers below
        new = (pull < clip) & (pull > -2.0 * clip)
        if np.array_equal(new, keep) or new.sum() < 10:
            break
        keep = new
    return s, c, keep


def _binned(a, k, how="sum"):
    """``a`` summed (or its errors added in quadrature, or flags or-ed) over k x k blocks."""
    ny, nx = (a.shape[0] // k) * k, (a.shape[1] // k) * k
    b = a[:ny, :nx].reshape(ny // k, k, nx // k, k)
    if how == "quadrature":
        return np.sqrt((b ** 2).sum(axis=(1, 3)))
    if how == "any":
        return b.any(axis=(1, 3))
    return b.sum(axis=(1, 3))


def from_image(ha, ha_unc, r, r_unc, *, bad=None, min_snr=5.0, clip=2.5, blocks=4,
               start=None, min_pixels=200) -> dict | None:
    """The scale that best nulls the image's line-free light: H = s R + c over bright pixels.

    Every pixel where the continuum image is bright (S/N > ``min_snr``: the galaxy's
    disc and bulge, the stars) votes: a straight line H = s R + c is fitted, weighted by
    each pixel's error, and pixels far *above* it (HII regions: line emission adds to H
    only) are clipped, iteratively. The offset c absorbs a sky left in either image.
    The error is a jackknife over 2 ``blocks`` patches of the chosen pixels (equal-count
    strips in x, halved in y), so that pixels of one region, which are not independent,
    count together, and a colour gradient across the galaxy shows in it. Diffuse ionised gas, which no clipping removes, makes
    this estimate a little high: a cross-check, not the first choice.

    A shallow image with fewer than ``min_pixels`` such pixels is summed in 2 × 2, 4 × 4
    or 8 × 8 blocks first. Returns None when fewer than 30 pixels (or blocks) qualify.
    """
    ha, ha_unc, r, r_unc = (np.asarray(a, float) for a in (ha, ha_unc, r, r_unc))
    unusable = ~(np.isfinite(ha) & np.isfinite(r) & np.isfinite(ha_unc) & np.isfinite(r_unc)
                 & (ha_unc > 0) & (r_unc > 0))
    if bad is not None:
        unusable |= np.asarray(bad, bool)
    # a shallow image has few pixels of bright continuum: sum 2 x 2, 4 x 4, 8 x 8 blocks
    # (the ratio of sums is the same s) and take the first binning with min_pixels that
    # reach the S/N, else the one with most
    tries = []
    for k in (1, 2, 4, 8):
        if k == 1:
            level = (ha, ha_unc, r, r_unc, unusable)
        else:
            z = np.where(unusable, 0.0, 1.0)
            level = (_binned(ha * z, k), _binned(ha_unc * z, k, "quadrature"),
                     _binned(r * z, k), _binned(r_unc * z, k, "quadrature"),
                     _binned(unusable, k, "any"))
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = ~level[4] & (level[2] / level[3] > min_snr)
        tries.append((k, level, ok))
        if ok.sum() >= min_pixels:
            break
    k, (ha, ha_unc, r, r_unc, _), ok = max(tries, key=lambda t: (t[2].sum() >= min_pixels,
                                                                   t[2].sum()))
    if ok.sum() < 30:
        return None
    yy, xx = np.nonzero(ok)
    h, hu, rr, ru = ha[ok], ha_unc[ok], r[ok], r_unc[ok]
    s0 = float(np.median(h / rr)) if start is None else float(start)
    s, c, keep = _null_scale(h, hu, rr, ru, start=s0, clip=clip)
    # jackknife parts: the chosen pixels cut into ``blocks`` equal-count strips in x,
    # each halved in y, so that each part is a patch of the galaxy or a few stars
    part = np.empty(xx.size, int)
    for i, strip in enumerate(np.array_split(np.argsort(xx, kind="stable"), blocks)):
        half = strip[np.argsort(yy[strip], kind="stable")]
        part[half[: half.size // 2]], part[half[half.size // 2:]] = 2 * i, 2 * i + 1
    parts = [p for p in np.unique(part) if (part == p).sum() >= 3]
    jack = []
    for p in parts:
        m = part != p
        jack.append(_null_scale(h[m], hu[m], rr[m], ru[m], start=s, clip=clip)[0])
    jack = np.array(jack)
    nk = jack.size
    err = float(math.sqrt((nk - 1) / nk * np.sum((jack - jack.mean()) ** 2))) if nk > 2 else np.nan
    return {"scale": s, "scale_err": err, "offset": c, "n_pixels": int(keep.sum()),
            "n_candidates": int(ok.sum()), "n_parts": int(nk), "binning": k,
            "method": (f"H = s R + c fitted to {int(keep.sum())} of {int(ok.sum())} "
                       f"{'pixels' if k == 1 else f'{k} x {k} blocks'} with "
                       f"{min_snr:g}-sigma continuum, line emitters (> {clip:g} sigma above) "
                       f"clipped; jackknife error over {nk} parts of the image")}


def from_calibration(ha_header, r_header, *, bands=None, ha_filter="", cont_filter="") -> dict | None:
    """The scale the flux calibrations (or, failing them, the filters' widths) predict.

    With ``PHOTFLAM`` in both stacks' headers (08's standard stars): a source of flat f_λ
    gives f_λ / PHOTFLAM e-/s in each filter, so s = PHOTFLAM(R) / PHOTFLAM(Hα), with the
    zero points' errors and a ``CALIBRATION_REL_ERR`` for the colour of real sources.
    Else, with both filters' ``width_A`` in ``bands``: s ≈ width(Hα) / width(R), which
    assumes equal peak throughputs (``WIDTHS_REL_ERR``). Else None.
    """
    bands = bands or {}
    if ha_header is not None and r_header is not None and \
            "PHOTFLAM" in ha_header and "PHOTFLAM" in r_header:
        s = float(r_header["PHOTFLAM"]) / float(ha_header["PHOTFLAM"])
        zp_err = math.hypot(float(ha_header.get("PHOTZPER", 0.0) or 0.0),
                            float(r_header.get("PHOTZPER", 0.0) or 0.0))
        rel = math.hypot(0.4 * math.log(10) * zp_err, CALIBRATION_REL_ERR)
        return {"scale": s, "scale_err": s * rel,
                "method": f"PHOTFLAM({cont_filter}) / PHOTFLAM({ha_filter}) of 08's flux "
                          f"calibration, for a flat-f_lambda source ({100 * rel:.0f} % error)"}
    wh = (bands.get(ha_filter) or {}).get("width_A")
    wr = (bands.get(cont_filter) or {}).get("width_A")
    if wh and wr:
        s = float(wh) / float(wr)
        return {"scale": s, "scale_err": s * WIDTHS_REL_ERR,
                "method": f"filter widths {wh} A / {wr} A, equal throughputs assumed "
                          f"({100 * WIDTHS_REL_ERR:.0f} % error)"}
    return None


def choose(estimates: dict, *, given=None) -> dict:
    """Take one continuum scale from the estimates, with the reason, and check agreement.

    Parameters
    ----------
    estimates : dict
        Name -> an estimate (a dict with ``scale`` and ``scale_err``) or None; names as
        made here: ``'stars'``, ``'image'``, ``'calibration'``.
    given : float, optional
        A scale from the manifest (``contsub: {scale: ...}``): taken as it is.

    Returns
    -------
    dict
        ``scale``, ``scale_err``, ``source``, ``reason`` (a sentence), ``agree`` (every
        pair of estimates within ``AGREE_SIGMA`` combined sigma), ``disagreements``
        (sentences) and ``estimates`` (the ones that exist).

    The order of preference: the manifest's scale; the stars (at least 3 measured); the
    image; the calibration. The chosen error is widened, where the other measurement
    (stars or image) disagrees, to half the difference, so that the quoted error covers
    what the methods leave open; the calibration, a prediction for a flat spectrum,
    only checks.
    """
    have = {k: v for k, v in estimates.items()
            if v is not None and np.isfinite(v.get("scale", np.nan))}
    pairs = []
    names = list(have)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ea, eb = have[a]["scale_err"], have[b]["scale_err"]
            comb = math.hypot(ea if np.isfinite(ea) else 0.0, eb if np.isfinite(eb) else 0.0)
            diff = have[a]["scale"] - have[b]["scale"]
            if comb > 0 and abs(diff) > AGREE_SIGMA * comb:
                pairs.append(f"{a} {have[a]['scale']:.5f} and {b} {have[b]['scale']:.5f} differ by "
                             f"{abs(diff) / comb:.1f} sigma")
    if given is not None:
        out = {"scale": float(given), "scale_err": 0.0, "source": "manifest",
               "reason": "the manifest gives it (contsub: scale), taken as exact"}
    else:
        order = [k for k in ("stars", "image", "calibration") if k in have]
        if not order:
            msg = ("the continuum scale can't be measured: too few stars, too little bright "
                   "continuum in the image and no flux calibration or filter widths. Give it in "
                   "the manifest: contsub: {scale: ...}")
            raise ReduxError(msg)
        src = order[0]
        best = have[src]
        err = float(best["scale_err"])
        widened = []
        # a measurement (stars, image) widens the other's error where they disagree; the
        # calibration's flat-spectrum prediction only checks (it is flagged, not used)
        for other in [k for k in order[1:] if k != "calibration"]:
            o = have[other]
            comb = math.hypot(err, o["scale_err"] if np.isfinite(o["scale_err"]) else 0.0)
            diff = abs(best["scale"] - o["scale"])
            if comb > 0 and diff > AGREE_SIGMA * comb and diff / 2 > err:
                err = diff / 2
                widened.append(other)
        why = {"stars": f"the stars ({best.get('n_used', '?')} measured) are the direct measure",
               "image": "too few stars: the image's own continuum is the next best",
               "calibration": "neither stars nor enough bright continuum: the calibration"}[src]
        out = {"scale": float(best["scale"]), "scale_err": err, "source": src,
               "reason": why + (f"; its error widened to half its difference from the "
                                f"{' and '.join(widened)} estimate" if widened else "")}
    out.update(agree=not pairs, disagreements=pairs, estimates=have)
    return out
