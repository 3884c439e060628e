"""QA collectors of the science steps, 08-10, and the nebula comparison of 10 with MUSE."""

from __future__ import annotations

import logging

import numpy as np
from astropy.table import Table

from .. import fitsio, muse
from ..errors import ReduxError
from . import rows as limits  # the thresholds, each named where it is used
from .rows import as_float, fmt

log = logging.getLogger(__name__)


def photometry_rows(paths, target, truth, out):
    path = paths.product("zeropoints")
    if path.is_file():
        for z in fitsio.read_table(path):
            _zero_point(z, truth, out)
    stars = paths.product("stars")
    if stars.is_file():
        cat = fitsio.read_table(stars)
        n = int((cat["kind"] == "star").sum()) if "kind" in cat.colnames else len(cat)
        others = "" if "kind" not in cat.colnames else f" ({len(cat) - n} other sources: the nucleus, knots)"
        out.add("n_stars", n, unit="stars", reason=f"{n} stars in the calibrated catalogue{others}")


def _zero_point(z, truth, out):
    f, source = str(z["filter"]), str(z["source"])
    zp, zp_err = as_float(z["zp"]), as_float(z["zp_err"])
    if source == "none":
        out.add(f"zero_point_{f}", np.nan, unit="mag", flag="warn",
                reason=f"{f}: no standards and no zero_point in the manifest: magnitudes are "
                       "instrumental and fluxes stay in e-/s")
        return
    if source == "manifest":
        out.add(f"zero_point_{f}", zp, unit="mag", flag="info",
                reason=f"{f}: zero point {zp:.3f} taken from the manifest, not measured "
                       "tonight (no standards)")
    else:
        flag = "pass" if np.isfinite(zp_err) and zp_err <= limits.ZP_ERR_WARN else "warn"
        out.add(f"zero_point_{f}", zp, error=zp_err, unit="mag", flag=flag,
                reason=f"{f}: ZP {zp:.3f} +- {fmt(zp_err, 2)} mag from the standards; warn "
                       f"if the error exceeds {limits.ZP_ERR_WARN:g} mag")
    k, k_err, fitted = as_float(z["k"]), as_float(z["k_err"]), bool(z["k_fitted"])
    if np.isfinite(k):
        if source != "standards":
            flag, reason = "info", f"{f}: extinction {k:.3f} mag/airmass from the manifest"
        elif not fitted:
            flag = "warn"
            reason = (f"{f}: extinction k = {k:.3f} mag/airmass was not fitted (k_fitted False: "
                      "taken as given, the standards' airmasses could not constrain it); its "
                      "error is not in the zero point's")
        else:
            flag = "pass" if np.isfinite(k_err) and k_err <= limits.K_ERR_WARN else "warn"
            reason = (f"{f}: extinction k = {k:.3f} +- {fmt(k_err, 2)} mag/airmass fitted to the "
                      f"standards; warn if k is not fitted or its error exceeds {limits.K_ERR_WARN:g}")
        out.add(f"extinction_{f}", k, error=k_err if fitted else np.nan, unit="mag/airmass",
                flag=flag, reason=reason)
    if source == "standards":
        n_used, n_total = int(z["n_used"]), int(z["n_total"])
        rejected = (n_total - n_used) / n_total if n_total else 0.0
        bad = n_used < limits.MIN_STANDARDS or rejected > limits.MAX_REJECTED
        out.add(f"n_standards_{f}", n_used, unit="measurements", flag="warn" if bad else "pass",
                reason=f"{f}: {n_used} of {n_total} standard-star measurements used; warn below "
                       f"{limits.MIN_STANDARDS} or if more than {100 * limits.MAX_REJECTED:g} % are rejected")
        rms = as_float(z["rms"])
        out.add(f"zp_fit_rms_{f}", rms, unit="mag",
                flag="pass" if np.isfinite(rms) and rms <= limits.ZP_RMS_WARN else "warn",
                reason=f"{f}: rms of the standards about the fit {fmt(rms, 2)} mag; warn above "
                       f"{limits.ZP_RMS_WARN:g} mag (clouds, a wrong catalogue match, a colour term)")
    if truth is not None and f in truth["zero_point"] and np.isfinite(zp):
        d = zp - float(truth["zero_point"][f])
        pull = f", {d / zp_err:+.2f} sigma" if np.isfinite(zp_err) and zp_err > 0 else ""
        out.add(f"zero_point_vs_truth_{f}", d, error=zp_err, unit="mag",
                reason=f"{f}: ZP - the demo's true {truth['zero_point'][f]:g} = {d:+.4f} mag{pull}")
        if np.isfinite(k) and f in truth["extinction"]:
            dk = k - float(truth["extinction"][f])
            out.add(f"extinction_vs_truth_{f}", dk, error=k_err if fitted else np.nan,
                    unit="mag/airmass",
                    reason=f"{f}: k - the demo's true {truth['extinction'][f]:g} = {dk:+.4f}")


def hii_rows(paths, target, truth, out):
    path = paths.product("hii_regions")
    cat = fitsio.read_table(path) if path.is_file() else None
    if cat is not None:
        kind = str(cat.meta.get("kind", "HII regions"))
        out.add("n_hii_regions", len(cat), unit="regions", flag="pass" if len(cat) else "warn",
                reason=f"{len(cat)} in hii_regions.ecsv ({kind}); warn if none was found")
    cs_path = paths.product("continuum_scale")
    meta = fitsio.read_table(cs_path).meta if cs_path.is_file() else {}
    scale = as_float(meta.get("scale_used", (cat.meta if cat is not None else {}).get("continuum_scale")))
    err = as_float(meta.get("scale_used_err",
                          (cat.meta if cat is not None else {}).get("continuum_scale_err")))
    if np.isfinite(scale):
        rel = err / scale if np.isfinite(err) and scale else np.nan
        src = meta.get("scale_from", "")
        flag = "pass" if np.isfinite(rel) and rel <= limits.CONT_SCALE_REL_WARN else "warn"
        if src == "manifest" and not np.isfinite(rel):
            flag = "info"
        out.add("continuum_scale", scale, error=err, flag=flag,
                reason=f"continuum scale {scale:.4g} +- {fmt(err, 2)} ({fmt(100 * rel, 2)} %"
                       f"{', from ' + str(src) if src else ''}); warn if the relative error "
                       f"exceeds {100 * limits.CONT_SCALE_REL_WARN:g} % (it is that error on the line "
                       "flux of a region whose continuum equals its line)")
        est = meta.get("estimates") or {}
        if len(est) > 1:
            agree = bool(meta.get("scale_agree", True))
            listed = "; ".join(f"{k} {as_float(v.get('scale')):.4g} +- {fmt(as_float(v.get('scale_err')), 2)}"
                               for k, v in est.items())
            out.add("continuum_scale_agreement", len(est), unit="estimates",
                    flag="pass" if agree else "warn",
                    reason=f"{listed}: " + ("they agree within 2 sigma" if agree else
                                            "; ".join(meta.get("scale_disagreements") or []))
                    + "; warn when two independent estimates differ by more than 2 sigma")
        if meta.get("scale_from") == "stars":
            n = int(meta.get("n_used", 0))
            out.add("continuum_scale_stars", n, unit="stars", flag="pass" if n >= 5 else "warn",
                    reason=f"{n} stars measured the continuum scale (scatter "
                           f"{fmt(as_float(meta.get('scatter')), 2)}); warn below 5")
        if truth is not None:
            true = float(truth["cont_scale"])
            out.add("continuum_scale_vs_truth", 100 * (scale / true - 1), unit="%",
                    reason=f"continuum scale {scale:.4g} vs the demo's true {true:g}"
                           + (f" ({(scale - true) / err:+.1f} sigma)" if err > 0 else ""))
    if truth is not None and cat is not None and len(cat) and "ra" in cat.colnames:
        _hii_vs_truth(cat, truth, out)


def _hii_vs_truth(cat, truth, out):
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    true = truth.table("hii_regions")
    if "ra" not in true.colnames or "flux_cgs" not in cat.colnames:
        return
    ours = SkyCoord(np.asarray(cat["ra"], float) * u.deg, np.asarray(cat["dec"], float) * u.deg)
    ref = SkyCoord(np.asarray(true["ra"], float) * u.deg, np.asarray(true["dec"], float) * u.deg)
    idx, sep, _ = ref.match_to_catalog_sky(ours)
    radius = 1.5 * float(truth["pixel_scale"]) * u.arcsec
    close = sep < radius
    # one of ours per true region: the nearest
    matched = close & (np.bincount(idx[close], minlength=len(cat))[idx] == 1)
    out.add("hii_found_vs_truth", int(close.sum()), unit="regions",
            reason=f"{int(close.sum())} of the demo's {len(true)} HII regions have a detection "
                   f"within {radius.value:.1f} arcsec ({len(cat)} detections)")
    if matched.any():
        ratio = np.asarray(cat["flux_cgs"], float)[idx[matched]] / np.asarray(
            true["halpha_flux"], float)[matched]
        med = float(np.median(ratio))
        out.add("hii_flux_vs_truth", med, unit="ours/true",
                reason=f"median Halpha flux ours / true {med:.3f} over {int(matched.sum())} "
                       "regions matched one to one (Kron apertures; neighbours blend)")


def halpha_muse_rows(paths, target, truth, out):
    """10's rows: the anchoring fit (slope, offset, bins) and the nebulae against MUSE."""
    path = paths.product("anchor_fit")
    if path.is_file():
        _anchor_rows(fitsio.read_table(path).meta, truth, out)
    path = paths.product("nebulae")
    if path.is_file():
        _nebula_rows(fitsio.read_table(path), truth, out)


def _anchor_rows(meta, truth, out):
    """The fit MUSE = offset + slope x ours: slope (against the truth on the demo), offset, bins."""
    slope, slope_err = as_float(meta.get("slope")), as_float(meta.get("slope_err"))
    offset, offset_err = as_float(meta.get("offset")), as_float(meta.get("offset_err"))
    n_bins = as_float(meta.get("n_bins"))
    n_bins, n_pix = (int(n_bins) if np.isfinite(n_bins) else 0), meta.get("n_pixels", "?")
    out.add("anchor_slope", slope, error=slope_err,
            flag="pass" if abs(slope - 1) <= limits.ANCHOR_SLOPE_TOL else "warn",
            reason=f"MUSE = offset + slope x ours: slope {slope:.3f} +- {fmt(slope_err, 2)}; "
                   f"warn if it differs from 1 by more than {limits.ANCHOR_SLOPE_TOL:g} (the two "
                   "flux scales disagree by that much)")
    unit = str(meta.get("offset_unit", meta.get("unit", "")))
    out.add("anchor_offset", offset, error=offset_err, unit=unit,
            reason=f"offset {offset:.3g} +- {fmt(offset_err, 2)} {unit} per MUSE pixel "
                   "(a difference in sky subtraction)")
    out.add("anchor_bins", n_bins, unit="bins",
            flag="pass" if n_bins >= limits.ANCHOR_MIN_BINS else "warn",
            reason=f"the fit used {n_bins} bins of {n_pix} pixels; warn below "
                   f"{limits.ANCHOR_MIN_BINS} bins (too few to see a slope)")
    space = truth["space"] if truth is not None and "space" in truth.facts else {}
    true_key = "anchor_slope" if "anchor_slope" in space else "muse_slope"
    if true_key in space and np.isfinite(slope) and meta.get("mode", "hst") == "hst":
        true = float(space[true_key])
        out.add("anchor_slope_vs_truth", slope - true, error=slope_err,
                reason=f"slope - the demo's right answer {true:.4f} (MUSE / the HST "
                       f"image's line) = {slope - true:+.4f}")


def _nebula_rows(neb, truth, out):
    """How our nebula fluxes compare with MUSE's: the count, the median ratio, its scatter."""
    s = comparison_stats(neb)
    out.add("n_nebulae", s["n"], unit="nebulae", flag="pass" if s["n"] else "warn",
            reason=f"{s['n']} of {len(neb)} nebulae have fluxes to compare with MUSE"
                   + (f" (the demo has {truth['space']['n_nebulae']})"
                      if truth is not None and "n_nebulae" in truth.facts.get("space", {})
                      else ""))
    if s["n"]:
        med = s["median"]
        out.add("nebula_ratio_median", med, unit="ours/MUSE",
                flag="pass" if abs(med - 1) <= limits.NEBULA_BIAS_TOL else "warn",
                reason=f"median flux ratio ours / MUSE {med:.3f} over {s['n']} nebulae "
                       f"(16-84 %: {s['p16']:.3f}-{s['p84']:.3f}); warn if it differs "
                       f"from 1 by more than {100 * limits.NEBULA_BIAS_TOL:g} %")
        expected = s["expected_scatter"]
        if np.isfinite(expected) and expected > 0:
            flag = "pass" if s["scatter"] <= limits.NEBULA_SCATTER_FACTOR * expected else "warn"
            reason = (f"scatter of the ratio (1.4826 MAD) {s['scatter']:.3f}, the flux "
                      f"errors explain {expected:.3f}; warn above {limits.NEBULA_SCATTER_FACTOR:g} x that")
        else:
            flag = "info"
            reason = (f"scatter of the ratio (1.4826 MAD) {s['scatter']:.3f} "
                      f"({fmt(s['scatter_dex'], 2)} dex); no errors to compare with")
        out.add("nebula_ratio_scatter", s["scatter"], flag=flag, reason=reason)
        _nebula_before_and_truth_rows(neb, out)


def _nebula_before_and_truth_rows(neb, out):
    """The ratios before anchoring, and against the demo's truth where the table has it."""
    if "flux_true" in neb.colnames:
        t = comparison_stats(neb, ref="flux_true")
        if "flux_before" in neb.colnames:
            tb = comparison_stats(neb, col="flux_before", ref="flux_true")
            out.add("nebula_ratio_vs_truth_before", tb["median"], unit="ours/true",
                    reason=f"before anchoring, median flux ours / the demo's true flux "
                           f"in the mask {fmt(tb['median'], 4)} over {tb['n']} nebulae "
                           f"(scatter {fmt(tb['scatter'])})")
        out.add("nebula_ratio_vs_truth", t["median"], unit="ours/true",
                reason=f"after anchoring, median flux ours / the demo's true flux in "
                       f"the mask {fmt(t['median'], 4)} over {t['n']} nebulae (scatter "
                       f"{fmt(t['scatter'])})")
    if "flux_before" in neb.colnames:
        b = comparison_stats(neb, col="flux_before")
        out.add("nebula_ratio_before", b["median"], unit="ours/MUSE",
                reason=f"median ratio before anchoring {fmt(b['median'])}, scatter "
                       f"{fmt(b['scatter'])}: what the anchoring changed")


def nebula_comparison(ours, muse_map, labels, *, ours_err=None, muse_err=None,
                      before=None, unit=None) -> Table:
    """Per-nebula flux sums of two images on one grid, over a nebula mask.

    Parameters
    ----------
    ours, muse_map : 2-D arrays
        Our image and the reference (MUSE) map, on the mask's pixel grid and in the
        same flux-per-pixel units.
    labels : 2-D array
        Nebula ids >= 0; negative (PHANGS writes -1) or NaN is background, as
        `redux_helpers.muse.read_nebulae` returns it.
    ours_err, muse_err : 2-D arrays, optional
        One-sigma uncertainty per pixel; the sums' errors add them in quadrature
        (which is too small where the noise of neighbouring pixels is correlated,
        e.g. after smoothing or regridding).
    before : 2-D array, optional
        Our image before anchoring, for a ``flux_before`` column.
    unit : str or `~astropy.units.Unit`, optional
        The images' flux-per-pixel unit (e.g. ``'erg / (s cm2)'``), given to every
        ``flux`` column.

    Returns
    -------
    `~astropy.table.Table`
        ``id``, ``n_pixels`` (pixels summed), ``n_invalid`` (pixels of the nebula left
        out because one image is not finite there), ``flux_ours``, ``flux_ours_err``,
        ``flux_muse``, ``flux_muse_err`` and ``flux_before`` when given. A pixel
        counts only where every image given is finite, so all sums cover the same
        pixels. The sums are `redux_helpers.muse.nebula_sums`'.

    Examples
    --------
    >>> lab = np.array([[1, 1, -1], [-1, 2, 2]])
    >>> t = nebula_comparison(np.ones((2, 3)), 2 * np.ones((2, 3)), lab)
    >>> t["flux_ours"].tolist(), t["flux_muse"].tolist()
    ([2.0, 2.0], [4.0, 4.0])
    """
    images = {"ours": ours, "muse": muse_map, "ours_err": ours_err, "muse_err": muse_err,
              "before": before}
    images = {k: np.asarray(v, float) for k, v in images.items() if v is not None}
    shape = np.shape(labels)
    if any(im.shape != shape for im in images.values()):
        msg = (f"nebula_comparison: the images are {[im.shape for im in images.values()]} but "
               f"the nebula labels {shape}; regrid them onto the labels' grid first")
        raise ReduxError(msg)
    valid = np.ones(shape, bool)
    for im in images.values():
        valid &= np.isfinite(im)
    blank = {k: np.where(valid, im, np.nan) for k, im in images.items()}
    sums = {name: muse.nebula_sums(blank[name], labels, uncertainty=blank.get(f"{name}_err"))
            for name in ("ours", "muse")}
    first = sums["ours"]
    tab = Table({"id": np.asarray(first["id"], int),
                 "n_pixels": np.asarray(first["npix"] - first["n_bad"], int),
                 "n_invalid": np.asarray(first["n_bad"], int)})
    for name, s in sums.items():
        tab[f"flux_{name}"] = np.asarray(s["flux"], float)
        tab[f"flux_{name}_err"] = (np.asarray(s["flux_err"], float) if "flux_err" in s.colnames
                                   else np.full(len(tab), np.nan))
    if "before" in blank:
        tab["flux_before"] = np.asarray(muse.nebula_sums(blank["before"], labels)["flux"], float)
    empty = tab["n_pixels"] == 0
    for col in tab.colnames:
        if col.startswith("flux"):
            tab[col][empty] = np.nan
            tab[col].unit = unit
    tab.meta["comment"] = ("per-nebula sums over the nebula mask; only pixels where every "
                           "image is finite; errors in quadrature (correlated noise not "
                           "included)")
    return tab


def comparison_stats(tab, col="flux_ours", ref="flux_muse") -> dict:
    """How ``col`` compares with ``ref`` row by row: the ratio's median and scatter.

    Rows where either is not finite or ``ref`` is not positive are left out.

    Returns
    -------
    dict
        ``median`` (of col / ref), ``scatter`` (1.4826 x the median absolute
        deviation of the ratio), ``scatter_dex`` (the same of log10 of the positive
        ratios), ``p16``, ``p84`` (percentiles of the ratio), ``n`` (rows used) and,
        when ``{col}_err`` and ``{ref}_err`` columns exist, ``expected_scatter``: the
        median relative error of the ratio from those errors.

    Examples
    --------
    >>> t = Table({"flux_ours": [1.0, 2.2, 2.7], "flux_muse": [1.0, 2.0, 3.0]})
    >>> s = comparison_stats(t)
    >>> round(s["median"], 3), s["n"]
    (1.0, 3)
    """
    a, b = np.asarray(tab[col], float), np.asarray(tab[ref], float)
    ok = np.isfinite(a) & np.isfinite(b) & (b > 0)
    ratio = a[ok] / b[ok]
    out = {"n": int(ratio.size), "median": np.nan, "scatter": np.nan, "scatter_dex": np.nan,
           "p16": np.nan, "p84": np.nan, "expected_scatter": np.nan}
    if not ratio.size:
        return out
    med = float(np.median(ratio))
    out.update(median=med, scatter=float(limits.MAD_TO_SIGMA * np.median(np.abs(ratio - med))),
               p16=float(np.percentile(ratio, 16)), p84=float(np.percentile(ratio, 84)))
    pos = ratio[ratio > 0]
    if pos.size:
        lr = np.log10(pos)
        out["scatter_dex"] = float(limits.MAD_TO_SIGMA * np.median(np.abs(lr - np.median(lr))))
    if f"{col}_err" in tab.colnames and f"{ref}_err" in tab.colnames:
        ea = np.asarray(tab[f"{col}_err"], float)[ok]
        eb = np.asarray(tab[f"{ref}_err"], float)[ok]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(ratio) * np.hypot(ea / a[ok], eb / b[ok])
        rel = rel[np.isfinite(rel)]
        if rel.size:
            out["expected_scatter"] = float(np.median(rel))
    return out
