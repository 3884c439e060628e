"""Benchmark: sigma-clipped median of N raw bias frames, redux_helpers against ccdproc.

Makes N synthetic raw biases of 2048x2048 plus a 32-column overscan (uint16 with
BZERO, ``BIASSEC``/``TRIMSEC`` in the header) in a work folder (reused when present),
then for every N times, each in its own process:

* ``ours``          ``FrameReader`` (per-row overscan, trim) + ``combine_readers``
                    (median, 3-sigma MAD clip, up to 5 iterations), read band by band;
* ``ours-2w``       the same with ``workers=2`` (peak = own + 2 x largest worker's);
* ``ccdproc``       what a user wires by hand: ``CCDData.read``, ``subtract_overscan``,
                    ``trim_image``, then ``ccdproc.combine(method='median',
                    sigma_clip=True, ...'median'/'mad_std')``; ccdproc.combine clips
                    once (it has no ``maxiters``);
* ``ccdproc-files`` ``ccdproc.combine`` given the raw file names (same clip): the
                    combine-from-files path; it can't remove the overscan or trim,
                    so its image is not comparable with the others;
* ``ccdproc-5iter`` as ``ccdproc`` but clipped like ours (up to 5 iterations) with
                    astropy's ``sigma_clip`` on a ``ccdproc.Combiner``, because
                    ``Combiner.sigma_clipping(maxiters=5)`` raises TypeError in 2.5.

Wall and CPU time cover the work only (imports excluded; with ``--repeat`` the least
of each); peak memory is the child's own ``ru_maxrss``. The parent imports only the
standard library and makes frames and compares results in children too: Linux
carries a spawning process's RSS high-water mark into the child.

    python benchmarks/bench_combine.py [--frames 20 60] [--repeat 3] [--variants ...]
"""

import argparse
import json
import resource
import time
from pathlib import Path

from _common import interleaved, run_child, version_line

HERE = Path(__file__).resolve().parent
NY, NX, NIMG = 2048, 2080, 2048
BIASSEC, TRIMSEC = "[2053:2080,1:2048]", "[1:2048,1:2048]"
VARIANTS = ("ours", "ours-2w", "ccdproc", "ccdproc-files", "ccdproc-5iter")
CLIP = dict(method="median", sigma_clip=True, sigma_clip_low_thresh=3, sigma_clip_high_thresh=3,
            sigma_clip_func="median", sigma_clip_dev_func="mad_std")


def paths_for(work, n):
    return [work / f"bias_{i:03d}.fits" for i in range(n)]


def make_frames(work, n):
    """Raw biases: level ~1000 ADU drifting per frame, row structure shared with the
    overscan, fixed column pattern (a few warm columns), read noise 5.6 ADU, a few hits."""
    import numpy as np
    from astropy.io import fits

    work.mkdir(parents=True, exist_ok=True)
    rng0 = np.random.default_rng(2048)
    cols = np.zeros(NX)
    cols[:NIMG] = rng0.normal(0.0, 1.5, NIMG)
    cols[rng0.choice(NIMG, 6, replace=False)] += 25.0
    rows = 0.8 * np.sin(np.linspace(0.0, 3 * np.pi, NY))[:, None]
    for i, p in enumerate(paths_for(work, n)):
        if p.exists():
            continue
        rng = np.random.default_rng(1000 + i)
        img = 1000.0 + rng.normal(0.0, 3.0) + rows + cols + rng.normal(0.0, 5.6, (NY, NX))
        img[rng.integers(0, NY, 40), rng.integers(0, NIMG, 40)] += rng.uniform(200, 5000, 40)
        hdu = fits.PrimaryHDU(np.clip(np.round(img), 0, 65535).astype(np.uint16))
        hdu.header.update(IMAGETYP="BIAS", EXPTIME=0.0, BIASSEC=BIASSEC, TRIMSEC=TRIMSEC)
        tmp = p.with_name(p.name + ".tmp")
        hdu.writeto(tmp, overwrite=True)
        tmp.rename(p)


def ccds_by_hand(paths):
    import ccdproc
    from astropy.nddata import CCDData

    out = []
    for p in paths:
        ccd = CCDData.read(p, unit="adu")
        ccd = ccdproc.subtract_overscan(ccd, overscan=ccd[:, 2052:2080], median=True)
        out.append(ccdproc.trim_image(ccd[:, :NIMG]))
    return out


def run_variant(variant, paths):
    """The combined image, as a numpy array."""
    if variant.startswith("ours"):
        from redux_helpers.calibrate import FrameReader
        from redux_helpers.combine import combine_readers

        readers = [FrameReader(p) for p in paths]
        extra = {"workers": 2} if variant == "ours-2w" else {}
        res = combine_readers(readers, method="median", sigma=3.0, maxiters=5, **extra)
        for r in readers:
            r.close()
        return res.data
    import ccdproc

    if variant == "ccdproc":
        return ccdproc.combine(ccds_by_hand(paths), **CLIP).data
    if variant == "ccdproc-files":
        return ccdproc.combine([str(p) for p in paths], unit="adu", **CLIP).data
    if variant == "ccdproc-5iter":
        from astropy.stats import sigma_clip

        comb = ccdproc.Combiner(ccds_by_hand(paths))
        comb.data_arr.mask |= sigma_clip(comb.data_arr.data, sigma=3, maxiters=5, axis=0,
                                         cenfunc="median", stdfunc="mad_std", masked=True,
                                         copy=False).mask
        return comb.median_combine().data
    raise ValueError(variant)


def child(args):
    """Run one thing in this process and print one JSON line."""
    import warnings

    import numpy as np

    warnings.simplefilter("ignore")
    work, n = Path(args.work), args.n
    if args.child in ("make", "diff"):
        out = {}
        if args.child == "make":
            make_frames(work, n)
        else:
            ref = np.load(work / f"result_ours_{n}.npy").astype(np.float64)
            for v in args.variants:
                a = np.load(work / f"result_{v}_{n}.npy")
                if v != "ours" and a.shape == ref.shape:     # ccdproc-files: raw, untrimmed
                    d = np.abs(a - ref)
                    out[v] = [float(d.max()), float(100 * (d > 1e-3).mean())]
        print(json.dumps(out))
        return
    paths = paths_for(work, n)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    data = run_variant(args.child, paths)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    np.save(work / f"result_{args.child}_{n}.npy", np.asarray(data))
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)      # worker processes (ours-2w)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime) + kids.ru_utime + kids.ru_stime
    nkids = 2 if args.child == "ours-2w" else 0               # upper bound: forked pages shared
    print(json.dumps({"wall": wall, "cpu": cpu,
                      "rss_mb": (r1.ru_maxrss + nkids * kids.ru_maxrss) / 1024}))


def spawn(what, n, args):
    return run_child(__file__, what, "--n", n, "--work", args.work, "--variants", *args.variants)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[20, 60])
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--work", type=Path, default=HERE / "_work")
    ap.add_argument("--repeat", type=int, default=1, help="runs per case (interleaved)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if "ours" not in args.variants:
        args.variants.insert(0, "ours")
    spawn("make", max(args.frames), args)
    rows, loads = [], []
    for n in args.frames:
        res = interleaved(args.variants, args.repeat, lambda v, n=n: spawn(v, n, args),
                          label=f"{n} frames, ", loads=loads)
        diff = spawn("diff", n, args)
        for v in args.variants:
            r, o = res[v], res["ours"]
            d = diff.get(v)
            dtxt = "—" if v == "ours" else ("n/a" if d is None else f"{d[0]:.3g} ({d[1]:.2f} %)")
            rows.append(f"| {n} | {v} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['rss_mb']:.0f} | "
                        f"{r['wall'] / o['wall']:.1f} | {r['cpu'] / o['cpu']:.1f} | "
                        f"{r['rss_mb'] / o['rss_mb']:.1f} | {dtxt} |")
    print("| frames | method | wall (s) | CPU (s) | peak RSS (MB) | wall / ours | CPU / ours "
          "| RSS / ours | max abs diff vs ours, ADU (% of px > 0.001) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))
    print(f"\n{version_line(loads)}")


if __name__ == "__main__":
    main()
