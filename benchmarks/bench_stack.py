"""Benchmark: register and stack 10 calibrated 2048x2048 frames, ours against a hand-wired reference.

Makes 10 frames like the products of 06_badpix (electrons, 300 s, ``UNCERT`` and a
uint16 ``MASK`` plane, a celestial WCS) in a work folder (reused when present): one star
field of 2500 stars (FWHM 3.2 px), sky 4500 e-, read noise 9 e-, seen through dithers of
up to +-25 px with non-integer offsets, the last two frames also rotated by 1.5 degrees;
each frame has 300 cosmic rays (flagged ``COSMIC`` in its mask, left in the data) and one
bad column (flagged ``BADCOL``). The first frame is the reference.

Variants, each in its own process, from file names to the combined image in memory:

* ``ours``: what 07_stack does — per frame `fitsio.read_product`, `register.find_stars`,
  `register.register_frame` (the WCS refined by the stars) and `stack.resample`
  (bilinear, variance and mask bits carried), then `stack.combine_stack` (5 sigma of each
  value's own uncertainty about the median, snoise 0.1, weighted mean). The reference
  is read twice (for its stars first), every other frame once.
* ``astroalign``: ``CCDData.read``; ``astroalign.find_transform`` on the data;
  ``astroalign.apply_transform`` (scikit-image warp, cubic) on the data, on the
  uncertainty and on the mask (``propagate_mask``); ``ccdproc.combine(method='average',
  sigma_clip=True)`` at 5 sigma, median and MAD, as a user would wire it by hand.
* ``reproject``: ``CCDData.read``; ``ccdproc.wcs_project`` onto the reference's WCS
  (`reproject.reproject_interp`, bilinear; it drops the uncertainty); then the same
  ``ccdproc.combine``. Exact here because the synthetic WCS are exact; a real night's
  WCS is only as good as its plate solution.

Reported: wall and CPU time (with ``--repeat``, the least of each), peak RSS of the
process, the registration error of the worst frame against the injected transform (rms
over a grid of points; not for ``reproject``, which trusts the WCS), the median stack /
truth flux of 200 bright unsaturated stars (aperture r = 8 px), and the count of pixels
more than 5 sigma above the truth away from stars (surviving cosmic rays or bad columns),
with sigma the stack's own uncertainty for ours and the frames' noise / sqrt(n) for the
others.

    python benchmarks/bench_stack.py [--variants ours astroalign reproject] [--repeat 3]
"""

import argparse
import json
import resource
import time
from pathlib import Path

from _common import interleaved, run_child, version_line

HERE = Path(__file__).resolve().parent
SIZE, N_FRAMES, N_STARS, N_CR = 2048, 10, 2500, 300
SKY, READ_NOISE, FWHM, EXPTIME = 4500.0, 9.0, 3.2, 300.0
ROTATION = 1.5
VARIANTS = ("ours", "astroalign", "reproject")


def frame_name(i):
    return f"stack_{i + 1:02d}.fits"


def geometry(n=N_FRAMES, seed=3):
    """(offset, rotation_deg) of every frame; the first is the reference."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = [((0.0, 0.0), 0.0)]
    for i in range(1, n):
        out.append((tuple(float(v) for v in rng.uniform(-25, 25, 2)),
                    ROTATION if i >= n - 2 else 0.0))
    return out


def truth_stars(seed=5):
    """Star positions (reference grid) and fluxes (e- in EXPTIME)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-40, SIZE + 40, (2, N_STARS))
    flux = 10 ** rng.uniform(3.3, 6.0, N_STARS)
    return x, y, flux


def make_frames(work):
    """Write the frames (unless present) and the true scene of the reference grid."""
    import numpy as np

    from redux_helpers import fitsio, masks
    from redux_helpers.demo import _frame_wcs, _make_wcs, _ref_to_frame, gauss_stamps

    names = [work / frame_name(i) for i in range(N_FRAMES)]
    scene_p = work / "stack_truth_scene.npy"
    if all(p.exists() for p in names) and scene_p.exists():
        return
    work.mkdir(parents=True, exist_ok=True)
    sx, sy, flux = truth_stars()
    sigma = FWHM / 2.3548
    scene = gauss_stamps(np.zeros((SIZE, SIZE)), sx, sy, flux, sigma)
    np.save(scene_p, scene.astype(np.float32))
    ref_wcs = _make_wcs(150.1, 2.2, ((SIZE + 1) / 2, (SIZE + 1) / 2))
    rng = np.random.default_rng(11)
    for i, (offset, rot) in enumerate(geometry()):
        fx, fy = _ref_to_frame(sx, sy, (SIZE, SIZE), offset, rot)
        model = gauss_stamps(np.full((SIZE, SIZE), SKY), fx, fy, flux, sigma)
        data = (rng.poisson(model) + rng.normal(0, READ_NOISE, model.shape)).astype(np.float32)
        unc = np.sqrt(model + READ_NOISE ** 2).astype(np.float32)
        mask = np.zeros(model.shape, np.uint16)
        cy, cx = rng.integers(2, SIZE - 3, (2, N_CR))
        for dy, dx in ((0, 0), (0, 1), (1, 0)):
            data[cy + dy, cx + dx] += rng.uniform(2000, 20000, N_CR).astype(np.float32)
            mask[cy + dy, cx + dx] |= masks.bit("COSMIC")
        col = int(rng.integers(100, SIZE - 100))
        data[:, col] = rng.uniform(0, 60000, SIZE)
        mask[:, col] |= masks.bit("BADCOL")
        header = _frame_wcs(ref_wcs, (SIZE, SIZE), offset, rot).to_header()
        header["EXPTIME"] = EXPTIME
        header["FILTER"] = "R"
        fitsio.write_ccd(names[i], data, header, uncertainty=unc, mask=mask, unit="electron",
                         mask_header=masks.header())


def true_transform(i):
    """Frame pixel -> reference pixel for frame i: q = R (p - c) + c + offset."""
    import numpy as np

    from redux_helpers.register import Transform

    offset, rot = geometry()[i]
    t = np.deg2rad(rot)
    m = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    c = np.full(2, (SIZE - 1) / 2)
    return Transform(m, c + np.asarray(offset) - m @ c)


def grid_error(found, true):
    import numpy as np

    yy, xx = np.mgrid[0:SIZE:10j, 0:SIZE:10j]
    ax, ay = found.apply(xx, yy)
    bx, by = true.apply(xx, yy)
    return float(np.sqrt(np.mean((ax - bx) ** 2 + (ay - by) ** 2)))


# ---- the variants: file names in, (stack, its sigma, transforms found) out ---------------
def run_ours(paths):
    import warnings

    import numpy as np
    from astropy.wcs import WCS, FITSFixedWarning

    from redux_helpers import fitsio, register, stack

    def wcs_of(header):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            return WCS(header).celestial

    ref = fitsio.read_product(paths[0])
    ref_bad = (ref.mask > 0) | ~np.isfinite(ref.data)
    rx, ry, _ = register.find_stars(ref.data, bad=ref_bad)
    ref_wcs, shape = wcs_of(ref.header), ref.data.shape
    del ref
    transforms, resampled = [], []
    for path in paths:                  # each file read once: registered, then resampled
        p = fitsio.read_product(path)
        if path == paths[0]:
            t = register.Transform(method="reference")
        else:
            bad = (p.mask > 0) | ~np.isfinite(p.data)
            x, y, _ = register.find_stars(p.data, bad=bad)
            t = register.register_frame(np.c_[x, y], np.c_[rx, ry], wcs=wcs_of(p.header),
                                        ref_wcs=ref_wcs, shape=shape)
        transforms.append(t)
        f = 1.0 / float(p.header["EXPTIME"])
        resampled.append(stack.resample(p.data * f, (p.uncertainty * f) ** 2, p.mask, t, shape,
                                        exptime=float(p.header["EXPTIME"]), filter="R"))
        del p
    s = stack.combine_stack(resampled, sigma=5.0, snoise=0.1)
    return s.data * EXPTIME, s.uncertainty * EXPTIME, transforms


def _ccdproc_combine(ccds):
    import ccdproc
    import numpy as np
    from astropy.stats import mad_std

    out = ccdproc.combine(ccds, method="average", sigma_clip=True, sigma_clip_low_thresh=5,
                          sigma_clip_high_thresh=5, sigma_clip_func=np.ma.median,
                          sigma_clip_dev_func=mad_std, mem_limit=16e9)
    return np.asarray(out.data), np.asarray(out.uncertainty.array)


def run_astroalign(paths):
    import astroalign
    import numpy as np
    from astropy.nddata import CCDData, StdDevUncertainty

    from redux_helpers.register import Transform

    ref = CCDData.read(paths[0])
    ref_data = np.ascontiguousarray(ref.data, dtype=np.float64)
    aligned, transforms = [ref], [Transform(method="reference")]
    for path in paths[1:]:
        ccd = CCDData.read(path)
        src = np.ascontiguousarray(ccd.data, dtype=np.float64)
        tf, _ = astroalign.find_transform(src, ref_data)
        transforms.append(Transform(np.asarray(tf.params[:2, :2]), np.asarray(tf.params[:2, 2]),
                                    "astroalign"))
        data, footprint = astroalign.apply_transform(tf, np.ma.array(src, mask=ccd.mask),
                                                     ref_data, propagate_mask=True)
        unc, _ = astroalign.apply_transform(tf, ccd.uncertainty.array.astype(np.float64),
                                            ref_data)
        aligned.append(CCDData(data, mask=footprint, uncertainty=StdDevUncertainty(unc),
                               unit=ccd.unit))
        del ccd, src
    data, unc = _ccdproc_combine(aligned)
    return data, unc, transforms


def run_reproject(paths):
    import warnings

    import ccdproc
    from astropy.nddata import CCDData

    ref = CCDData.read(paths[0])
    ccds = [ref]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in paths[1:]:
            ccds.append(ccdproc.wcs_project(CCDData.read(path), ref.wcs, target_shape=ref.shape))
    data, unc = _ccdproc_combine(ccds)
    return data, unc, None


def child(args):
    """Run one thing in this process and print one JSON line."""
    import warnings

    import numpy as np

    warnings.simplefilter("ignore")
    work = Path(args.work)
    if args.child == "make":
        make_frames(work)
        print(json.dumps({}))
        return
    paths = [work / frame_name(i) for i in range(N_FRAMES)]
    run = {"ours": run_ours, "astroalign": run_astroalign, "reproject": run_reproject}[args.child]
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    data, unc, transforms = run(paths)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    from photutils.aperture import CircularAperture, aperture_photometry

    scene = np.load(work / "stack_truth_scene.npy")
    sx, sy, flux = truth_stars()
    inside = (sx > 40) & (sx < SIZE - 41) & (sy > 40) & (sy < SIZE - 41)
    peak = flux / (2 * np.pi * (FWHM / 2.3548) ** 2)
    bright = inside & (peak > 2000) & (peak < 40000)
    pick = np.flatnonzero(bright)[:200]
    aper = CircularAperture(np.c_[sx[pick], sy[pick]], r=8.0)
    got = np.asarray(aperture_photometry(np.nan_to_num(data - SKY), aper)["aperture_sum"])
    want = np.asarray(aperture_photometry(scene, aper)["aperture_sum"])
    yy, xx = np.indices(scene.shape)
    near = np.zeros(scene.shape, bool)
    for x, y in zip(sx, sy, strict=True):
        if -10 < x < SIZE + 10 and -10 < y < SIZE + 10:
            near[max(0, int(y) - 8):int(y) + 9, max(0, int(x) - 8):int(x) + 9] = True
    z = (data - SKY - scene) / unc
    away = ~near & np.isfinite(z)
    errors = ([grid_error(t, true_transform(i)) for i, t in enumerate(transforms)]
              if transforms else [])
    print(json.dumps({
        "wall": wall,
        "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
        "rss_mb": r1.ru_maxrss / 1024,
        "reg_err": max(errors) if errors else None,
        "flux": float(np.median(got / want)),
        "n_high": int((z[away] > 5).sum()),
        "std_z": float(np.std(np.clip(z[away], -10, 10))),
    }))


def spawn(what, args):
    return run_child(__file__, what, "--work", args.work)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--work", type=Path, default=HERE / "_work")
    ap.add_argument("--repeat", type=int, default=1, help="runs per variant (interleaved)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    spawn("make", args)
    loads = []
    res = interleaved(args.variants, args.repeat, lambda v: spawn(v, args), loads=loads)
    print("| variant | wall (s) | CPU (s) | peak RSS (MB) | worst registration error (px) "
          "| star flux stack/truth | pixels > 5 sigma off stars | std of z off stars |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for v in args.variants:
        r = res[v]
        err = "exact WCS" if r["reg_err"] is None else f"{r['reg_err']:.3f}"
        print(f"| {v} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['rss_mb']:.0f} | {err} | "
              f"{r['flux']:.4f} | {r['n_high']} | {r['std_z']:.2f} |")
    print(f"\n{N_FRAMES} frames of {SIZE}x{SIZE}; {version_line(loads)}")


if __name__ == "__main__":
    main()
