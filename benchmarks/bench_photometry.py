"""Benchmark: photometry of ~1000 stars on a 2048x2048 stack; HII regions on the demo galaxy.

Photometry. Makes one 2048x2048 stack in e-/s like a product of 07_stack (``UNCERT``
and a uint16 ``MASK``, written by `fitsio.write_ccd`) in a work folder (reused when
present), with its truth (``phot_truth.ecsv``: x, y, flux): 1200 Gaussian stars of FWHM
3.2 px (`demo.gauss_stamps`), fluxes log-uniform over 1.3-1300 e-/s (3 decades; ~1000
stand above 5 sigma), on a background-subtracted sky of 0 with Gaussian noise of 0.05
e-/s per pixel; uncertainty sqrt(0.05**2 + star / 1200 s) (the stars' photon noise in
four 300 s frames), the data drawn from it. One bad column (garbage values, flagged
``BADCOL``) and 100 hot pixels (flagged ``HOT``). Variants, each in its own process,
from the file name to magnitudes in memory:

* ``ours``: what 08_photometry does -- `fitsio.read_product`,
  `photometry.detect_stars(fwhm=3.2, nsigma=5)`, `photometry.measure` (aperture
  1.5 FWHM, annulus 4-6 FWHM), `photometry.aperture_correction` out to 3 FWHM on the
  40 brightest isolated stars (unflagged, S/N > 30, no other detection within 6 FWHM,
  off the edge; 08's choice without its flat-sky cut: there is no galaxy here), then
  `photometry.instrumental_mag` of the corrected fluxes.
* ``photutils``: what a user wires by hand from the photutils docs -- ``CCDData.read``;
  ``sigma_clipped_stats`` for the sky's std; ``DAOStarFinder(threshold=5 std,
  fwhm=3.2)`` on data - median, masked pixels masked; ``CircularAperture`` (1.5 FWHM) and
  ``CircularAnnulus`` (4-6 FWHM); ``ApertureStats(sigma_clip=SigmaClip(3))`` median of
  the annulus as the local background, times ``area_overlap``;
  ``aperture_photometry(error=uncertainty, mask=mask)``; ``-2.5 log10(flux)``. No
  aperture correction: its fluxes miss the light outside 1.5 FWHM (0.26 % for this PSF
  sampled in pixels), and its errors leave out the background's.

Quality (computed after the clock stops): stars detected, and matched to a true star
within 1 px; for the true stars with an expected S/N > 50, no other true star within
4 FWHM (a blend says nothing about the error), no flagged pixel within the aperture
+ 1 px and away from the edges (the same set for both variants), the count measured (a
finite flux), the median measured/true flux (``photutils``: raw, uncorrected) and the
median and std of z = (measured - true) / error (std 1 when the error is honest). The
stars of that kind next to a flagged pixel are reported apart.

HII regions. ``demo.ensure_demo(work / "demo1024", DemoConfig(size=1024))`` (raw frames
and truth, ~15 s, reused); only its truth is used: the noiseless ``scene_Ha`` and
``scene_R`` (e-/s, galaxy, stars and regions) and ``hii_regions``. A stack-like pair is
drawn from them with a fixed seed: per-pixel sky noise of a four-frame stack, Hα 0.02
e-/s and R 0.06 e-/s, plus the sources' photon noise (4 x 600 s in Hα, 4 x 300 s in R);
the uncertainty images are those sigmas. Variant ``hii``:
``hii.subtract_continuum(ha, ha_unc, r, r_unc, demo.CONT_SCALE,
line_in_continuum=demo.LINE_IN_R)`` then ``hii.find_regions(line, line_unc, fwhm=3.2,
exclude=discs)``, the discs around the true stars out to where their 3 % colour
residual falls below 0.015 e-/s, plus 3 px (as tests/test_hii.py does). ``hii-2048``:
the same galaxy at 2048x2048 (``DemoConfig(size=2048)``: 50 regions, 590 stars), its
truth built by ``demo.Night`` -- the arrays ``ensure_demo`` writes to ``truth/``,
without the ~50 raw frames it would also write. Reported: regions found, true regions
recovered within 1 px, the median found/true flux (``halpha_rate``) of those, and the
detections more than 1 px from any true region (spurious).

Reported for all: wall and CPU time of the work, imports excluded (with ``--repeat``, the
least of each; ``hii*`` from the arrays in memory, the photometry from the file name),
and the child's peak RSS (~150 MB of it is the imports). The parent imports only the
standard library; the inputs are made in a child.

    python benchmarks/bench_photometry.py [--variants ours photutils hii hii-2048] [--repeat 3]
    python benchmarks/bench_photometry.py --size 512 --work /tmp/phot   # a quick check
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from _common import interleaved, run_child, version_line

HERE = Path(__file__).resolve().parent
SIZE, N_STARS, FWHM = 2048, 1200, 3.2
SKY_SIGMA, GAIN_EFF = 0.05, 1200.0          # e-/s per pixel; s (e- per e-/s)
FLUX_RANGE = (1.3, 1300.0)                  # e-/s, log-uniform
N_HOT = 100
R_AP, R_IN, R_OUT, R_MAX = 1.5 * FWHM, 4.0 * FWHM, 6.0 * FWHM, 3.0 * FWHM
N_APCORR = 40
HA_SIGMA, R_SIGMA = 0.02, 0.06              # e-/s per pixel, four-frame stacks
HII_SIZES = {"hii": 1024, "hii-2048": 2048}
PHOT_VARIANTS = ("ours", "photutils")
VARIANTS = (*PHOT_VARIANTS, *HII_SIZES)


# ---- inputs --------------------------------------------------------------------------------
def make_stack(work, size):
    """Write phot_stack.fits and phot_truth.ecsv unless present for this size."""
    import numpy as np
    from astropy.io import fits
    from astropy.table import Table

    from redux_helpers import fitsio, masks
    from redux_helpers.demo import gauss_stamps

    path, truth_p = work / "phot_stack.fits", work / "phot_truth.ecsv"
    if path.exists() and truth_p.exists() and Table.read(truth_p).meta.get("size") == size:
        return
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(21)
    n = round(N_STARS * (size / SIZE) ** 2)
    x, y = rng.uniform(-5, size + 4, (2, n))
    flux = 10 ** rng.uniform(*np.log10(FLUX_RANGE), n)
    stars = gauss_stamps(np.zeros((size, size)), x, y, flux, FWHM / 2.3548)
    unc = np.sqrt(SKY_SIGMA ** 2 + stars / GAIN_EFF)
    data = stars + rng.normal(0.0, 1.0, stars.shape) * unc
    mask = np.zeros(data.shape, np.uint16)
    col = int(rng.integers(100, size - 100))
    data[:, col] = rng.uniform(0.0, 50.0, size)
    mask[:, col] |= masks.bit("BADCOL")
    hy, hx = rng.integers(0, size, (2, N_HOT))
    data[hy, hx] += rng.uniform(5.0, 50.0, N_HOT)
    mask[hy, hx] |= masks.bit("HOT")
    header = fits.Header()
    header["EXPTIME"] = GAIN_EFF
    fitsio.write_ccd(path, data, header, uncertainty=unc, mask=mask, unit="electron/s",
                     mask_header=masks.header())
    t = Table({"x": x, "y": y, "flux": flux},
              meta={"size": size, "fwhm": FWHM, "sky_sigma": SKY_SIGMA, "gain_eff": GAIN_EFF,
                    "bad_column": col, "comment": "0-based pixel centres; flux e-/s"})
    t.write(truth_p, format="ascii.ecsv", overwrite=True)


def hii_names(work, size):
    from redux_helpers import demo

    stem = f"hii_{size}_v{demo.DEMO_VERSION}"
    return work / f"{stem}.npz", work / f"{stem}_truth.ecsv"


def make_hii(work, size):
    """Write the stack-like Hα/R pair, the star discs and the true regions of one size."""
    import math

    import numpy as np

    from redux_helpers import demo

    arrays_p, truth_p = hii_names(work, size)
    if arrays_p.exists() and truth_p.exists():
        return
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if size == 1024:
        truth = demo.Truth(demo.ensure_demo(work / "demo1024", demo.DemoConfig(size=1024)))
        scene = {f: truth.image(f"scene_{f}") for f in ("Ha", "R")}
        regions, stars = truth.table("hii_regions"), truth.table("stars")
    else:                    # truth only: what make_demo writes to truth/, no raw frames
        night = demo.Night(demo.DemoConfig(size=size))
        scene = {f: night.scene(f, seeing_fwhm=3.2).astype(np.float32).astype(np.float64)
                 for f in ("Ha", "R")}
        regions, stars = night.hii, night.stars
    print(f"# demo truth {size}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rng = np.random.default_rng(5)
    out = {}
    for filt, sky, t_tot in (("Ha", HA_SIGMA, 4 * demo.EXPTIME["Ha"]),
                             ("R", R_SIGMA, 4 * demo.EXPTIME["R"])):
        unc = np.sqrt(sky ** 2 + np.clip(scene[filt], 0, None) / t_tot)
        out[filt.lower()] = (scene[filt] + rng.normal(0.0, 1.0, unc.shape) * unc
                             ).astype(np.float32)
        out[f"{filt.lower()}_unc"] = unc.astype(np.float32)
    # the stars' 3 % colour residuals are excluded, not detected (tests/test_hii.py)
    sig = FWHM / 2.3548
    yy, xx = np.mgrid[0:size, 0:size]
    discs = np.zeros((size, size), bool)
    for x, y, f in zip(stars["x"], stars["y"], stars["rate_Ha"], strict=True):
        peak = 0.03 * f / (2 * np.pi * sig ** 2)
        rad = sig * math.sqrt(2 * math.log(max(peak / 0.015, 1.0))) + 3
        x0, x1 = max(int(x - rad) - 1, 0), min(int(x + rad) + 2, size)
        y0, y1 = max(int(y - rad) - 1, 0), min(int(y + rad) + 2, size)
        discs[y0:y1, x0:x1] |= np.hypot(xx[y0:y1, x0:x1] - x, yy[y0:y1, x0:x1] - y) < rad
    np.savez(arrays_p, exclude=discs, **out)
    regions["x", "y", "sigma", "halpha_rate"].write(truth_p, format="ascii.ecsv",
                                                     overwrite=True)


# ---- the photometry variants: file name in, (x, y, flux, flux_err, mag) out -----------------
def run_ours(path):
    import numpy as np

    from redux_helpers import fitsio, photometry

    p = fitsio.read_product(path)
    found = photometry.detect_stars(p.data, p.uncertainty, p.mask, fwhm=FWHM, nsigma=5.0)
    x, y = np.asarray(found["x"]), np.asarray(found["y"])
    m = photometry.measure(p.data, p.uncertainty, p.mask, x, y, r_aperture=R_AP, r_in=R_IN,
                           r_out=R_OUT)
    # the brightest isolated stars (08_photometry's bright_isolated, no galaxy here)
    ok = ~np.asarray(found["flagged"]) & ~np.asarray(found["saturated"])
    ok &= np.nan_to_num(np.asarray(m["snr"], float)) > 30
    if len(x) > 1:
        d = np.hypot(x[:, None] - x[None], y[:, None] - y[None])
        np.fill_diagonal(d, np.inf)
        ok &= d.min(axis=1) > R_OUT
    ny, nx = p.data.shape
    edge = R_OUT + 1
    ok &= (x > edge) & (x < nx - 1 - edge) & (y > edge) & (y < ny - 1 - edge)
    pick = np.flatnonzero(ok)[:N_APCORR]
    ac = photometry.aperture_correction(p.data, p.uncertainty, p.mask, x[pick], y[pick],
                                        r_aperture=R_AP, r_max=R_MAX, r_in=R_IN, r_out=R_OUT)
    flux = np.asarray(m["flux"]) * ac["apcorr"]
    err = np.asarray(m["flux_err"]) * ac["apcorr"]
    mag, _ = photometry.instrumental_mag(flux, err)
    return x, y, flux, err, mag, {"apcorr": ac["apcorr"], "apcorr_err": ac["apcorr_err"],
                                  "apcorr_n": ac["n_stars"]}


def run_photutils(path):
    import numpy as np
    from astropy.nddata import CCDData
    from astropy.stats import SigmaClip, sigma_clipped_stats
    from photutils.aperture import (
        ApertureStats,
        CircularAnnulus,
        CircularAperture,
        aperture_photometry,
    )
    from photutils.detection import DAOStarFinder

    ccd = CCDData.read(path)
    data, mask = ccd.data, ccd.mask
    _, median, std = sigma_clipped_stats(data, sigma=3.0, mask=mask)
    sources = DAOStarFinder(threshold=5.0 * std, fwhm=FWHM)(data - median, mask=mask)
    positions = np.c_[sources["x_centroid"], sources["y_centroid"]]
    aperture = CircularAperture(positions, r=R_AP)
    annulus = CircularAnnulus(positions, r_in=R_IN, r_out=R_OUT)
    bkg = ApertureStats(data, annulus, mask=mask, sigma_clip=SigmaClip(sigma=3.0)).median
    phot = aperture_photometry(data, aperture, error=ccd.uncertainty.array, mask=mask)
    flux = np.asarray(phot["aperture_sum"]) - bkg * aperture.area_overlap(data, mask=mask)
    err = np.asarray(phot["aperture_sum_err"])
    with np.errstate(invalid="ignore", divide="ignore"):
        mag = -2.5 * np.log10(flux)
    return positions[:, 0], positions[:, 1], flux, err, mag, {}


def phot_quality(work, x, y, flux, err):
    import numpy as np
    from astropy.io import fits
    from astropy.table import Table

    t = Table.read(work / "phot_truth.ecsv")
    tx, ty, tf = (np.asarray(t[c], float) for c in ("x", "y", "flux"))
    d = np.hypot(x[:, None] - tx[None], y[:, None] - ty[None])
    j, ok = d.argmin(axis=1), d.min(axis=1) < 1.0
    # the true stars with expected S/N > 50 and no true neighbour within R_IN
    area = np.pi * R_AP ** 2
    snr = tf / np.sqrt(area * SKY_SIGMA ** 2 + tf / GAIN_EFF)
    dt = np.hypot(tx[:, None] - tx[None], ty[:, None] - ty[None])
    np.fill_diagonal(dt, np.inf)
    size = int(t.meta["size"])
    inside = (tx > R_OUT) & (tx < size - 1 - R_OUT) & (ty > R_OUT) & (ty < size - 1 - R_OUT)
    bad = np.asarray(fits.getdata(work / "phot_stack.fits", "MASK")) > 0
    by, bx = np.nonzero(bad)
    near_bad = np.zeros(len(tx), bool)        # a flagged pixel within the aperture (+1 px)
    for i, (cx, cy) in enumerate(zip(tx, ty, strict=True)):
        near_bad[i] = (np.hypot(bx - cx, by - cy) < R_AP + 1).any()
    clean = (snr > 50) & (dt.min(axis=1) > R_IN) & inside & ~near_bad
    hit = (snr > 50) & (dt.min(axis=1) > R_IN) & inside & near_bad
    got = np.full(len(tx), np.nan)
    got_err = np.full(len(tx), np.nan)
    got[j[ok]], got_err[j[ok]] = flux[ok], err[ok]
    use = clean & np.isfinite(got) & np.isfinite(got_err)
    z = (got[use] - tf[use]) / got_err[use]
    hit_found = hit & np.isin(np.arange(len(tx)), j[ok])
    hit_finite = hit_found & np.isfinite(got)
    return {"n_true": len(tx), "detected": len(x), "matched": len(set(j[ok])),
            "n_clean": int(clean.sum()), "n_used": int(use.sum()),
            "flux_ratio": float(np.median(got[use] / tf[use])),
            "z_median": float(np.median(z)), "z_std": float(np.std(z)),
            "n_hit": int(hit.sum()), "hit_found": int(hit_found.sum()),
            "hit_finite": int(hit_finite.sum()),
            "hit_ratio": (float(np.median(got[hit_finite] / tf[hit_finite]))
                          if hit_finite.any() else None)}


# ---- HII regions --------------------------------------------------------------------------
def run_hii(arrays):
    from redux_helpers import demo, hii

    line, line_unc = hii.subtract_continuum(arrays["ha"], arrays["ha_unc"], arrays["r"],
                                            arrays["r_unc"], demo.CONT_SCALE,
                                            line_in_continuum=demo.LINE_IN_R)
    _, t = hii.find_regions(line, line_unc, fwhm=FWHM, exclude=arrays["exclude"])
    return t


def hii_quality(truth, t):
    import numpy as np

    tx, ty = np.asarray(truth["x"], float), np.asarray(truth["y"], float)
    x, y, flux = (np.asarray(t[c], float) for c in ("x", "y", "flux"))
    if not len(x):
        return {"n_true": len(tx), "found": 0, "recovered": 0, "flux_ratio": None,
                "spurious": 0}
    d = np.hypot(x[:, None] - tx[None], y[:, None] - ty[None])
    j, ok = d.argmin(axis=1), d.min(axis=1) < 1.0
    ratio = flux[ok] / np.asarray(truth["halpha_rate"], float)[j[ok]]
    return {"n_true": len(tx), "found": len(x), "recovered": len(set(j[ok])),
            "flux_ratio": float(np.median(ratio)) if ok.any() else None,
            "spurious": int((~ok).sum())}


# ---- processes ----------------------------------------------------------------------------
def warm_imports():
    """Import what every variant uses before the clock starts (the same for all)."""
    import astropy.nddata  # noqa: F401
    import astropy.stats  # noqa: F401
    import astropy.table  # noqa: F401
    import photutils.aperture  # noqa: F401
    import photutils.detection  # noqa: F401
    import photutils.segmentation  # noqa: F401
    import sep  # noqa: F401

    from redux_helpers import demo, fitsio, hii, photometry  # noqa: F401


def child(args):
    """Run one thing in this process and print one JSON line."""
    import warnings

    import numpy as np

    warnings.simplefilter("ignore")
    work = Path(args.work)
    if args.child == "make":
        if set(args.variants) & set(PHOT_VARIANTS):
            make_stack(work, args.size)
        for v in set(args.variants) & set(HII_SIZES):
            make_hii(work, HII_SIZES[v])
        print(json.dumps({}))
        return
    warm_imports()
    if args.child in HII_SIZES:
        arrays_p, truth_p = hii_names(work, HII_SIZES[args.child])
        from astropy.table import Table

        with np.load(arrays_p) as f:
            arrays = {k: f[k] for k in f.files}
        truth = Table.read(truth_p)
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        t = run_hii(arrays)
        wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        quality = hii_quality(truth, t)
    else:
        run = {"ours": run_ours, "photutils": run_photutils}[args.child]
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        x, y, flux, err, _, extra = run(work / "phot_stack.fits")
        wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        quality = {**phot_quality(work, np.asarray(x, float), np.asarray(y, float),
                                  np.asarray(flux, float), np.asarray(err, float)), **extra}
    print(json.dumps({
        "wall": wall,
        "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
        "rss_mb": r1.ru_maxrss / 1024,
        **quality,
    }))


def spawn(what, args):
    return run_child(__file__, what, "--work", args.work, "--size", args.size, "--variants",
                     *args.variants, echo_stderr=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--work", type=Path, default=HERE / "_work")
    ap.add_argument("--repeat", type=int, default=1, help="runs per variant (interleaved)")
    ap.add_argument("--size", type=int, default=SIZE,
                    help="side of the photometry stack (stars scale with its area)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    t_make = time.perf_counter()
    spawn("make", args)
    print(f"# inputs ready in {time.perf_counter() - t_make:.1f} s", file=sys.stderr)
    loads = []
    res = interleaved(args.variants, args.repeat, lambda v: spawn(v, args), loads=loads)
    phot = [v for v in args.variants if v in PHOT_VARIANTS]
    if phot:
        print("| variant | wall (s) | CPU (s) | peak RSS (MB) | stars detected | matched to "
              "truth (1 px) | clean S/N > 50 stars measured | median flux / truth "
              "| median z | std z |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for v in phot:
            r = res[v]
            print(f"| {v} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['rss_mb']:.0f} | "
                  f"{r['detected']} | {r['matched']} of {r['n_true']} | "
                  f"{r['n_used']} of {r['n_clean']} | {r['flux_ratio']:.4f} | "
                  f"{r['z_median']:+.2f} | {r['z_std']:.2f} |")
        if "ours" in res:
            r = res["ours"]
            print(f"\nours: aperture correction x{r['apcorr']:.4f} +- {r['apcorr_err']:.4f} "
                  f"from {r['apcorr_n']} stars; photutils: none (raw fluxes)")
        print(f"\nthe {res[phot[0]]['n_hit']} isolated S/N > 50 stars with a flagged pixel "
              f"within {R_AP:g} + 1 px (left out above):")
        for v in phot:
            r = res[v]
            ratio = "" if r["hit_ratio"] is None else f", median flux / truth {r['hit_ratio']:.3f}"
            print(f"* {v}: {r['hit_found']} found, {r['hit_finite']} with a flux{ratio}")
        print(f"\nphotometry stack {args.size}x{args.size}")
    hii_v = [v for v in args.variants if v in HII_SIZES]
    if hii_v:
        print("\n| variant | image | wall (s) | CPU (s) | peak RSS (MB) | regions found "
              "| true regions recovered (1 px) | median flux / truth | spurious |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for v in hii_v:
            r = res[v]
            ratio = "—" if r["flux_ratio"] is None else f"{r['flux_ratio']:.4f}"
            print(f"| {v} | {HII_SIZES[v]}² | {r['wall']:.1f} | {r['cpu']:.1f} | "
                  f"{r['rss_mb']:.0f} | {r['found']} | {r['recovered']} of {r['n_true']} | "
                  f"{ratio} | {r['spurious']} |")
    print(f"\n{version_line(loads)}")


if __name__ == "__main__":
    main()
