"""Benchmark: cosmic-ray detection on one 2048x2048 sky frame, the default against the others.

Makes one frame like a calibrated sky exposure in electrons (sky ~4500 e-, Poisson
noise, read noise 9 e-, ~200 Gaussian stars of FWHM ~3.2 px, ~600 cosmic-ray tracks of
1-6 pixels with 800-15000 e- per pixel) in a work folder (reused when present), then
times ``redux_helpers.cosmics.detect_cosmics(data, read_noise=9.0, ...)`` for each
variant, each in its own process:

* ``default``: the defaults (``backend='exact'``: exact medians where a hit can be,
  ``maxiter=2``);
* ``default+guard``: the same with ``star_guard=True``;
* ``astroscrappy``: astroscrappy's separable median checked by ``check_seeds``, the
  default before 2026-12-04;
* ``astroscrappy-exact``: the previous astroscrappy setting (exact medians, no checks,
  ``maxiter=4``, a 2 px saturation margin);
* ``lacosmic``: lacosmic as it ran before (``maxiter=4``, no star guard, 2 px margin);
* ``lacosmic-2``: lacosmic with ``maxiter=2``, the star guard and a 3 px margin.
 Reported: wall and CPU time of the call (with
``--repeat``, the least of each), the child's peak memory (its own ``ru_maxrss``), the fraction of injected cosmic-ray
pixels flagged, the false-positive pixels (flagged, not injected), in total and
leaving out the direct neighbours of a track (L.A.Cosmic grows detections into them),
and the false positives in star cores (within one FWHM of a star peaking 10 sigma above
the sky, further than 2 px from a track; the stars' positions are kept beside the frame).

The parent imports only the standard library and makes the frame in a child: Linux
carries a spawning process's RSS high-water mark into the child.

    python benchmarks/bench_cosmics.py [--variants default lacosmic] [--repeat 3]
"""

import argparse
import json
import resource
import time
from pathlib import Path

from _common import interleaved, run_child, version_line

HERE = Path(__file__).resolve().parent
SIZE, SKY, READ_NOISE, FWHM = 2048, 4500.0, 9.0, 3.2
N_STARS, N_TRACKS = 200, 600
VARIANTS = {
    "default": {},
    "default+guard": {"star_guard": True},
    "astroscrappy": {"backend": "astroscrappy"},
    "astroscrappy-exact": {"backend": "astroscrappy", "sepmed": False, "star_guard": False,
                           "maxiter": 4, "margin": 2},
    "lacosmic": {"backend": "lacosmic", "star_guard": False, "maxiter": 4, "margin": 2},
    "lacosmic-2": {"backend": "lacosmic", "star_guard": True},
}


def make_frame(work, seed=7):
    """Write cosmics_frame.npy (float32 e-), cosmics_truth.npy (bool) and
    cosmics_stars.npy (x, y, peak e-) unless present."""
    import numpy as np

    data_p, truth_p = work / "cosmics_frame.npy", work / "cosmics_truth.npy"
    stars_p = work / "cosmics_stars.npy"
    if data_p.exists() and truth_p.exists() and stars_p.exists():
        return
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    model = np.full((SIZE, SIZE), SKY)
    sigma, hw = FWHM / 2.3548, 8
    yy, xx = np.mgrid[-hw:hw + 1, -hw:hw + 1]
    stars = []
    for _ in range(N_STARS):
        x, y = rng.uniform(hw, SIZE - hw - 1, 2)
        flux = 10 ** rng.uniform(3.5, 6.0)
        stars.append((x, y, flux / (2 * np.pi * sigma ** 2)))
        ix, iy = int(x), int(y)
        r2 = (xx + ix - x) ** 2 + (yy + iy - y) ** 2
        model[iy - hw:iy + hw + 1, ix - hw:ix + hw + 1] += (
            flux / (2 * np.pi * sigma ** 2) * np.exp(-0.5 * r2 / sigma ** 2))
    data = rng.poisson(model).astype(np.float64) + rng.normal(0.0, READ_NOISE, model.shape)
    truth = np.zeros(model.shape, bool)
    for _ in range(N_TRACKS):
        n = rng.integers(1, 7)
        y, x = rng.uniform(3, SIZE - 10, 2)
        angle = rng.uniform(0, 2 * np.pi)
        py = np.round(y + np.arange(n) * np.sin(angle)).astype(int)
        px = np.round(x + np.arange(n) * np.cos(angle)).astype(int)
        new = ~truth[py, px]
        data[py[new], px[new]] += rng.uniform(800, 15000, new.sum())
        truth[py, px] = True
    np.save(data_p, data.astype(np.float32))
    np.save(truth_p, truth)
    np.save(stars_p, np.array(stars))


def child(args):
    """Run one thing in this process and print one JSON line."""
    import warnings

    import numpy as np

    warnings.simplefilter("ignore")
    work = Path(args.work)
    if args.child == "make":
        make_frame(work)
        print(json.dumps({}))
        return
    from scipy import ndimage

    from redux_helpers.cosmics import detect_cosmics

    data = np.load(work / "cosmics_frame.npy")
    truth = np.load(work / "cosmics_truth.npy")
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    crmask = detect_cosmics(data, read_noise=READ_NOISE, **VARIANTS[args.child])
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    near = ndimage.binary_dilation(truth, structure=np.ones((3, 3), bool))
    fp = crmask & ~truth
    core = np.zeros(data.shape, bool)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for x, y, peak in np.load(work / "cosmics_stars.npy"):
        if peak > 10 * np.sqrt(SKY + READ_NOISE ** 2):
            box = (slice(max(int(y - FWHM) - 1, 0), int(y + FWHM) + 2),
                   slice(max(int(x - FWHM) - 1, 0), int(x + FWHM) + 2))
            core[box] |= np.hypot(yy[box] - y, xx[box] - x) <= FWHM
    far = ~ndimage.binary_dilation(truth, structure=np.ones((3, 3), bool), iterations=2)
    print(json.dumps({
        "wall": wall,
        "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
        "rss_mb": r1.ru_maxrss / 1024,
        "injected": int(truth.sum()),
        "found": float((crmask & truth).sum() / truth.sum()),
        "fp": int(fp.sum()),
        "fp_away": int((fp & ~near).sum()),
        "fp_core": int((fp & core & far).sum()),
    }))


def spawn(what, args):
    return run_child(__file__, what, "--work", args.work)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--work", type=Path, default=HERE / "_work")
    ap.add_argument("--repeat", type=int, default=1, help="runs per backend (interleaved)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    spawn("make", args)
    rows = []
    loads = []
    res = interleaved(args.variants, args.repeat, lambda b: spawn(b, args), loads=loads)
    ref = res.get("lacosmic")
    for b in args.variants:
        r = res[b]
        ratio = f"{r['cpu'] / ref['cpu']:.2f}" if ref else "—"
        rows.append(f"| {b} | {r['wall']:.1f} | {r['cpu']:.1f} | {ratio} | {r['rss_mb']:.0f} | "
                    f"{100 * r['found']:.1f} % of {r['injected']} | {r['fp']} | {r['fp_away']} "
                    f"| {r['fp_core']} |")
    print("| variant | wall (s) | CPU (s) | CPU / lacosmic | peak RSS (MB) | injected CR pixels "
          "flagged | false-positive px | of which not next to a CR | in star cores |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"\n{version_line(loads)}")


if __name__ == "__main__":
    main()
