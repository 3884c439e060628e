"""Benchmark: anchor a 4096x4096 HST-like Hα image to a 300x300 MUSE-like map.

Makes a synthetic pair with a known answer in a work folder (reused when present):

* ``anchor_hst_<size>.fits``: an HST-like continuum-subtracted Hα image, 4096x4096
  float32 in erg/s/cm² per pixel, 0.05″ pixels, TAN WCS rotated 12° from north, PSF FWHM
  0.1″ (header ``FWHM``): 300 circular Gaussian nebulae (intrinsic sigma 0.2-0.6″, fluxes
  log-uniform over 2e-16 - 2e-14, two decades), all inside the MUSE footprint; six star
  residuals (PSF-sized, ±3e-16 - 2e-15, in this image only); Gaussian noise of 2e-18 per
  pixel.
* ``anchor_muse_<size>.fits``: a MUSE-like map, 300x300 spaxels of 0.2″, WCS rotated
  -8°, its centre 12″ east and 8″ north of the HST image's (it lies inside it), PSF FWHM
  0.8″: OFFSET + SLOPE x (the true line smoothed to 0.8″, sampled at the spaxels' centres,
  times the spaxel's area) + Gaussian noise of 2e-18 per spaxel, with OFFSET = 1.5e-17 per
  spaxel and SLOPE = 1.08. ``anchor_truth_<size>.ecsv`` keeps the nebulae.

Variants, each in its own process, timed from the two file names to the anchored image
at full resolution in memory (not written to disk: writing a 64 MB float32 FITS is the
same for every variant and not what is compared), imports excluded:

* ``ours``: what notebook 10 does -- ``fits.getdata`` + ``WCS`` of both;
  `anchoring.beam_match` (the 4096² image smoothed on its own grid by a Gaussian of FWHM
  sqrt(0.8² - 0.1²)″, then `anchoring.regrid`: bicubic ``reproject_interp`` onto the MUSE
  grid, times the pixel-area ratio); `anchoring.binned_fit` with the notebook's defaults
  (20 bins, percentiles 0.5-99.9, image pixels above 5 sigma); `anchoring.anchor`;
  `anchoring.repair_negatives` (pixels below -3 sigma, notebook 10's default; 3 px
  kernel); `anchoring.noise_level`
  of the anchored image and `anchoring.add_white_noise` there. Not included: the
  notebook's ``align`` (the WCS are exact here) and ``star_mask`` (it needs a continuum
  image, which this pair has not).
* ``reference``: what a user wires by hand after the PHANGS-style description --
  ``reproject.reproject_interp`` (its default, bilinear) of the unsmoothed 4096² image onto
  the MUSE grid, times the area ratio; ``astropy.convolution.convolve_fft`` with a
  ``Gaussian2DKernel`` of FWHM sqrt(0.8² - 0.1²)″ on the MUSE grid (its defaults); a
  straight line by ``numpy.polyfit(image, muse, 1)`` over all the pixels both have;
  anchored = offset x area ratio + slope x image; pixels <= 0 set to NaN and filled by
  ``astropy.convolution.interpolate_replace_nans`` with the same 3 px kernel.
* ``reference-exact``: the same with ``reproject_exact`` (the overlap of every input
  pixel with every output pixel: a mean per output pixel) x area ratio instead of
  ``reproject_interp``;
* ``reference-adaptive``: the same with ``reproject_adaptive(conserve_flux=True)`` (a
  flux per output pixel) instead.

Quality, computed after the clock stops (once per variant: the results are
deterministic): the fitted slope and offset against the injected ones; then the
anchored image (before and after the repair) is brought to MUSE's grid and resolution
by `anchoring.beam_match`, the same for every variant, and summed in circular apertures
of 1.2″ around every nebula whose aperture lies inside the map: the median of
anchored / MUSE over those nebulae (MUSE's sums include its offset, as the anchored
image's do).

Reported: wall and CPU time of the work (with ``--repeat``, interleaved runs, the least
of each) and the child's peak RSS (largest over the repeats; ~110 MB of it is the
imports); for ``ours`` the wall time and RSS high-water mark after each step. The parent
imports only the standard library; the inputs are made in a child.

    python benchmarks/bench_anchor.py [--variants ours reference reference-exact ...] [--repeat 3]
    python benchmarks/bench_anchor.py --size 1024 --repeat 1     # a quick try (MUSE 75x75)
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from _common import interleaved, run_child, version_line

HERE = Path(__file__).resolve().parent
SIZE = 4096                                  # HST image side (px)
HST_PIX, HST_ROT, HST_FWHM = 0.05, 12.0, 0.1  # arcsec, deg, arcsec
MUSE_SIZE = 300
MUSE_PIX, MUSE_ROT, MUSE_FWHM = 0.2, -8.0, 0.8
MUSE_SHIFT = (12.0, 8.0)                     # arcsec east, north of the HST centre
RA0, DEC0 = 150.1, 2.2                       # deg
N_NEB, NEB_SIGMA, NEB_FLUX = 300, (0.2, 0.6), (2e-16, 2e-14)   # arcsec; erg/s/cm2
N_STARS, STAR_FLUX = 6, (3e-16, 2e-15)
HST_NOISE, MUSE_NOISE = 2e-18, 2e-18         # per pixel, per spaxel
OFFSET, SLOPE = 1.5e-17, 1.08                # per spaxel; MUSE / true
REPAIR_FWHM_PX = 3.0
R_APER = 1.2                                 # arcsec
VERSION = 1
VARIANTS = ("ours", "reference", "reference-exact", "reference-adaptive")
F2S = 1.0 / 2.354820045


def names(work, size):
    return (work / f"anchor_hst_{size}.fits", work / f"anchor_muse_{size}.fits",
            work / f"anchor_truth_{size}.ecsv")


def muse_size(size):
    return max(16, round(MUSE_SIZE * size / SIZE))


# ---- inputs --------------------------------------------------------------------------------
def make_wcs(ra, dec, shape, pix_arcsec, rot_deg):
    """A TAN WCS with (ra, dec) at the grid's centre, rotated by rot_deg from north."""
    import numpy as np
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    s = pix_arcsec / 3600.0
    t = np.deg2rad(rot_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    w.wcs.cd = np.array([[-s, 0.0], [0.0, s]]) @ rot
    w.wcs.set()
    return w


def add_gaussians(image, xs, ys, fluxes, sigmas):
    """Add circular Gaussians (total flux, sigma in px): the demo's own stamps."""
    from redux_helpers.demo import gauss_stamps

    return gauss_stamps(image, xs, ys, fluxes, sigmas)


def make_pair(work, size):
    """Write the HST-like image, the MUSE-like map and the nebulae unless present."""
    import numpy as np
    from astropy.io import fits
    from astropy.table import Table

    hst_p, muse_p, truth_p = names(work, size)
    if (hst_p.exists() and muse_p.exists() and truth_p.exists()
            and Table.read(truth_p).meta.get("version") == VERSION):
        return
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(17)
    nm = muse_size(size)
    n_neb = max(10, round(N_NEB * (size / SIZE) ** 2))
    w_hst = make_wcs(RA0, DEC0, (size, size), HST_PIX, HST_ROT)
    scale = size / SIZE
    dra = MUSE_SHIFT[0] * scale / 3600 / np.cos(np.deg2rad(DEC0))
    w_muse = make_wcs(RA0 + dra, DEC0 + MUSE_SHIFT[1] * scale / 3600, (nm, nm), MUSE_PIX,
                      MUSE_ROT)
    # nebulae: uniform over the MUSE grid less 2" on each side, positions on the sky
    margin = 2.0 / MUSE_PIX
    mx, my = rng.uniform(margin, nm - 1 - margin, (2, n_neb))
    ra, dec = w_muse.pixel_to_world_values(mx, my)
    hx, hy = w_hst.world_to_pixel_values(ra, dec)
    sig = rng.uniform(*NEB_SIGMA, n_neb)
    flux = 10 ** rng.uniform(*np.log10(NEB_FLUX), n_neb)
    # the HST image: nebulae at 0.1", star residuals, noise
    hst = np.zeros((size, size))
    add_gaussians(hst, hx, hy, flux, np.hypot(sig, HST_FWHM * F2S) / HST_PIX)
    sx, sy = rng.uniform(0.1 * size, 0.9 * size, (2, N_STARS))
    sf = 10 ** rng.uniform(*np.log10(STAR_FLUX), N_STARS) * rng.choice([-1, 1], N_STARS)
    add_gaussians(hst, sx, sy, sf, np.full(N_STARS, HST_FWHM * F2S / HST_PIX))
    hst += rng.normal(0.0, HST_NOISE, hst.shape)
    h = w_hst.to_header()
    h["BUNIT"] = "erg / (s cm2)"
    h["FWHM"] = (HST_FWHM, "[arcsec] PSF FWHM")
    fits.PrimaryHDU(hst.astype(np.float32), h).writeto(hst_p, overwrite=True)
    # MUSE: the true line at 0.8" (sampled at the spaxels' centres x their area)
    line = add_gaussians(np.zeros((nm, nm)), mx, my, flux,
                         np.hypot(sig, MUSE_FWHM * F2S) / MUSE_PIX)
    model = OFFSET + SLOPE * line
    muse = model + rng.normal(0.0, MUSE_NOISE, model.shape)
    h = w_muse.to_header()
    h["BUNIT"] = "erg / (s cm2)"
    h["FWHM"] = (MUSE_FWHM, "[arcsec] PSF FWHM")
    fits.PrimaryHDU(muse.astype(np.float32), h).writeto(muse_p, overwrite=True)
    Table({"ra": ra, "dec": dec, "x_hst": hx, "y_hst": hy, "x_muse": mx, "y_muse": my,
           "sigma_arcsec": sig, "flux": flux},
          meta={"version": VERSION, "size": size, "offset": OFFSET, "slope": SLOPE,
                "hst_noise": HST_NOISE, "muse_noise": MUSE_NOISE}
          ).write(truth_p, format="ascii.ecsv", overwrite=True)


# ---- the variants: file names in, anchored image (and the fit) out --------------------------
def run_ours(hst_p, muse_p, stages):
    from astropy.io import fits
    from astropy.wcs import WCS

    from redux_helpers import anchoring, skywcs

    def mark(name):
        stages.append((name, time.perf_counter(),
                       resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))

    img, h = fits.getdata(hst_p, header=True)
    ref, hr = fits.getdata(muse_p, header=True)
    wi, wr = WCS(h), WCS(hr)
    mark("read")
    bm = anchoring.beam_match(img, ref, image_wcs=wi, image_fwhm=float(h["FWHM"]), reference_wcs=wr,
                              reference_fwhm=float(hr["FWHM"]))
    mark("beam_match")
    fit = anchoring.binned_fit(bm.image, bm.reference, n_bins=20, percentiles=(0.5, 99.9),
                               min_snr=5.0)
    mark("binned_fit")
    anchored = anchoring.anchor(img, fit, image_pixel_area=skywcs.pixel_area_arcsec2(wi),
                                reference_pixel_area=skywcs.pixel_area_arcsec2(wr))
    mark("anchor")
    repaired, filled = anchoring.repair_negatives(anchored, nsigma=3.0,
                                                  kernel_fwhm_px=REPAIR_FWHM_PX)
    mark("repair_negatives")
    sigma = anchoring.noise_level(anchored)
    mark("noise_level")
    noisy = anchoring.add_white_noise(repaired, filled, sigma, seed=0)
    mark("add_white_noise")
    return (anchored, noisy, (fit.slope, fit.slope_err), (fit.offset, fit.offset_err),
            int(filled.sum()), wi, wr, ref)


def run_reference(hst_p, muse_p, stages, how="interp"):
    import numpy as np
    from astropy.convolution import Gaussian2DKernel, convolve_fft, interpolate_replace_nans
    from astropy.io import fits
    from astropy.wcs import WCS
    from astropy.wcs.utils import proj_plane_pixel_area
    from reproject import reproject_adaptive, reproject_exact, reproject_interp

    img, h = fits.getdata(hst_p, header=True)
    ref, hr = fits.getdata(muse_p, header=True)
    wi, wr = WCS(h), WCS(hr)
    area_ratio = proj_plane_pixel_area(wr) / proj_plane_pixel_area(wi)
    if how in ("interp", "exact"):
        reproject_fn = reproject_interp if how == "interp" else reproject_exact
        on_muse, _ = reproject_fn((img, wi), wr, shape_out=ref.shape)
        on_muse *= area_ratio
    else:
        on_muse, _ = reproject_adaptive((img, wi), wr, shape_out=ref.shape, conserve_flux=True)
    pix = np.sqrt(proj_plane_pixel_area(wr)) * 3600
    k_fwhm = np.sqrt(float(hr["FWHM"]) ** 2 - float(h["FWHM"]) ** 2) / pix
    matched = convolve_fft(on_muse, Gaussian2DKernel(k_fwhm * F2S))
    ok = np.isfinite(matched) & np.isfinite(ref)
    slope, offset = np.polyfit(matched[ok], ref[ok], 1)
    anchored = offset / area_ratio + slope * img
    work = np.where(anchored <= 0, np.nan, anchored)
    filled = int(np.isnan(work).sum() - np.isnan(anchored).sum())
    repaired = interpolate_replace_nans(work, Gaussian2DKernel(REPAIR_FWHM_PX * F2S))
    return (anchored, repaired, (float(slope), None), (float(offset), None), filled, wi, wr,
            ref)


# ---- quality ------------------------------------------------------------------------------
def quality(truth, anchored, final, wi, wr, ref):
    """Median anchored / MUSE in 1.2" apertures, on MUSE's grid at MUSE's resolution."""
    import numpy as np

    from redux_helpers import anchoring

    nm = ref.shape[0]
    r = R_APER / MUSE_PIX
    mx, my = np.asarray(truth["x_muse"]), np.asarray(truth["y_muse"])
    inside = (mx > r) & (mx < nm - 1 - r) & (my > r) & (my < nm - 1 - r)
    yy, xx = np.mgrid[0:nm, 0:nm]
    out = {"n_nebulae": int(inside.sum())}
    ref = np.asarray(ref, float)
    for key, im in (("anchored", anchored), ("repaired", final)):
        on = anchoring.beam_match(np.asarray(im, float), ref, image_wcs=wi, image_fwhm=HST_FWHM,
                                  reference_wcs=wr, reference_fwhm=MUSE_FWHM).image
        ratios = []
        for x, y in zip(mx[inside], my[inside], strict=True):
            ap = (xx - x) ** 2 + (yy - y) ** 2 <= r * r
            ratios.append(np.nansum(on[ap]) / np.nansum(ref[ap]))
        ratios = np.array(ratios)
        out[f"ratio_{key}"] = float(np.median(ratios))
        out[f"ratio_{key}_p16"], out[f"ratio_{key}_p84"] = (float(v) for v in
                                                            np.percentile(ratios, (16, 84)))
    return out


# ---- processes ----------------------------------------------------------------------------
def warm_imports():
    """Import what every variant uses before the clock starts (the same for all)."""
    import astropy.convolution  # noqa: F401
    import astropy.io.fits  # noqa: F401
    import astropy.wcs  # noqa: F401
    import astropy.wcs.utils  # noqa: F401
    import reproject  # noqa: F401
    import scipy.ndimage  # noqa: F401

    from redux_helpers import anchoring  # noqa: F401


def child(args):
    """Run one thing in this process and print one JSON line."""
    import warnings

    warnings.simplefilter("ignore")
    work = Path(args.work)
    hst_p, muse_p, truth_p = names(work, args.size)
    if args.child == "make":
        t0 = time.perf_counter()
        make_pair(work, args.size)
        print(json.dumps({"make_s": time.perf_counter() - t0}))
        return
    warm_imports()
    stages = []
    run = {"ours": run_ours,
           "reference": run_reference,
           "reference-exact": lambda a, b, s: run_reference(a, b, s, how="exact"),
           "reference-adaptive": lambda a, b, s: run_reference(a, b, s, how="adaptive"),
           }[args.child]
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    anchored, final, slope, offset, n_filled, wi, wr, ref = run(hst_p, muse_p, stages)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    res = {"wall": wall,
           "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
           "rss_mb": r1.ru_maxrss / 1024,
           "slope": slope[0], "slope_err": slope[1], "offset": offset[0],
           "offset_err": offset[1], "n_filled": n_filled,
           "n_pixels": int(anchored.size),
           "stages": [(n, t - (stages[i - 1][1] if i else t0), m)
                      for i, (n, t, m) in enumerate(stages)]}
    if args.quality:
        from astropy.table import Table

        res |= quality(Table.read(truth_p), anchored, final, wi, wr, ref)
    print(json.dumps(res))


def spawn(what, args, quality=False):
    extra = ["--quality"] if quality else []
    return run_child(__file__, what, "--work", args.work, "--size", args.size, *extra,
                     echo_stderr=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--work", type=Path, default=HERE / "_work")
    ap.add_argument("--repeat", type=int, default=3, help="runs per variant (interleaved)")
    ap.add_argument("--size", type=int, default=SIZE,
                    help="side of the HST-like image (the MUSE grid and the number of "
                         "nebulae scale with it)")
    ap.add_argument("--quality", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    t_all = time.perf_counter()
    made = spawn("make", args)
    print(f"# inputs ready in {made['make_s']:.1f} s", file=sys.stderr)
    loads, judged = [], set()

    def run(v):                      # quality once per variant: it is deterministic
        q = v not in judged
        judged.add(v)
        return spawn(v, args, quality=q)

    res = interleaved(args.variants, args.repeat, run, loads=loads)
    print("| variant | wall (s) | CPU (s) | peak RSS (MB) | slope (error) | offset per spaxel "
          "(error) | pixels repaired | nebulae: anchored / MUSE | repaired / MUSE |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v in args.variants:
        r = res[v]
        s_err = "" if r["slope_err"] is None else f" ± {r['slope_err']:.4f}"
        o_err = "" if r["offset_err"] is None else f" ± {r['offset_err']:.2e}"
        print(f"| {v} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['rss_mb']:.0f} | "
              f"{r['slope']:.4f}{s_err} ({r['slope'] / SLOPE - 1:+.2%}) | "
              f"{r['offset']:.3e}{o_err} ({r['offset'] / OFFSET - 1:+.1%}) | "
              f"{r['n_filled'] / r['n_pixels']:.1%} | "
              f"{r['ratio_anchored']:.4f} ({r['ratio_anchored_p16']:.3f}-"
              f"{r['ratio_anchored_p84']:.3f}) | "
              f"{r['ratio_repaired']:.4f} ({r['ratio_repaired_p16']:.3f}-"
              f"{r['ratio_repaired_p84']:.3f}) |")
    n = res[args.variants[0]]["n_nebulae"]
    print(f"\ninjected: slope {SLOPE}, offset {OFFSET:.3e} per spaxel (± : binned_fit's own "
          f"error); nebulae: median (16th-84th percentile) over the {n} whose {R_APER}\" "
          "aperture lies inside the MUSE map")
    if "ours" in res:
        print("ours, step by step (the first run): "
              + "; ".join(f"{n} {t:.2f} s (RSS high-water {m:.0f} MB)"
                          for n, t, m in res["ours"]["stages"]))
    nm = muse_size(args.size)
    print(f"\nHST-like image {args.size}x{args.size}, MUSE-like map {nm}x{nm}; "
          f"total run time {time.perf_counter() - t_all:.0f} s")
    print(f"{version_line(loads)}")


if __name__ == "__main__":
    main()
