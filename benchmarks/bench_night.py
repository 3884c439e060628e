"""Benchmark: a whole night, raw frames to stacks, the suite against a hand-wired ccdproc script.

Writes its own synthetic night (not ``redux_helpers.demo``) into
``benchmarks/_work/night_<size>_<frames>_thirds/raw`` unless it is there already: biases, dome
flats of two filters and dithered lights of those filters (sky, stars, cosmic rays, a
TAN WCS), raw ``uint16`` frames with an overscan strip and the header keywords
``IMAGETYP``, ``EXPTIME``, ``FILTER``, ``GAIN``, ``RDNOISE``, ``BIASSEC``, ``TRIMSEC``,
``AIRMASS``. ``--frames`` is the total: a third biases, a third flats (half per filter),
the rest lights split between the filters (issue 13's night).

Then times, each in a fresh process (a stdlib-only wrapper that runs the command and reads
``resource.getrusage(RUSAGE_CHILDREN)`` after it):

* ``suite``: ``python -m redux_helpers.cli run night --only 00,...,07 --no-html`` into a
  fresh products folder, with ``--param NAME=VALUE`` passed on; per-step seconds are the
  runner's own records (``<products>/night/.redux/<step>.json``).
* ``reference``: the same job wired by hand with ccdproc (this file's ``reference``):
  ``ccd_process`` (overscan, trim, bias, flat, gain), ``ccdproc.combine`` for the masters
  and the stacks, ``ccdproc.cosmicray_lacosmic`` (astroscrappy) per light, the sky median
  subtracted, ``ccdproc.wcs_project`` (reproject) onto the first light's grid.

After the runs, the suite's stacks are held against the night's truth (`check_stacks`:
the median star flux over the true flux, per filter; issue 13 asks for 0.5 %).

Wall time is the whole command's, imports and kernel starts included; CPU is user +
system of every process it waited for; peak RSS is the largest single process (kernels,
pool workers and the command itself are separate processes).

    python benchmarks/bench_night.py --size 1024 --frames 20
    python benchmarks/bench_night.py --variants suite --param backend=astroscrappy
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import interleaved, run_child, version_line

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FILTERS = ("R", "Ha")
GAIN, READ_NOISE, BIAS_LEVEL, OVERSCAN = 1.5, 7.0, 1000.0, 32
SKY_RATE = {"R": 12.0, "Ha": 1.5}        # e-/s per pixel
LIGHT_EXPTIME = {"R": 120.0, "Ha": 300.0}
FLAT_EXPTIME, N_STARS, FWHM = 5.0, 400, 3.2
HA_SCALE = 0.3                           # a star's Halpha rate over its R rate
STEPS = "00,01,02,03,04,05,06,07"
VARIANTS = ("suite", "reference")


def counts(frames):
    """(biases, flats per filter, lights per filter) for ``frames`` in total.

    A third biases, a third flats, a third lights, as in issue 13's night (60 frames: 20
    biases, 2 x 10 flats, 2 x 10 lights).
    """
    n_bias = max(3, round(frames / 3))
    n_flat = max(3, round(frames / 6))
    n_light = max(2, frames - n_bias - n_flat * len(FILTERS))
    per = [n_light // len(FILTERS) + (i < n_light % len(FILTERS)) for i in range(len(FILTERS))]
    return n_bias, n_flat, per


def night_truth(size, seed=3):
    """(the generator, each filter's true flat, the column pattern, the stars) of a night.

    The first draws of ``make_night``'s generator, in its order: `check_stacks` gets the
    same flats and stars back from the seed. Stars are (x, y, e-/s in R) on the grid of
    a light taken at zero dither (0-based pixels); Halpha sees ``HA_SCALE`` of that.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    flat_true = {f: (1 - 0.15 * (xx ** 2 + yy ** 2) * (1 + 0.1 * i)
                     ) * rng.normal(1, 0.01, (size, size)) for i, f in enumerate(FILTERS)}
    columns = rng.normal(0, 2.0, size + OVERSCAN)          # fixed column pattern, ADU
    margin = 40
    stars = np.c_[rng.uniform(-margin, size + margin, (N_STARS, 2)),
                  10 ** rng.uniform(3.0, 5.5, N_STARS)]   # x, y, e-/s
    return rng, flat_true, columns, stars


def night_wcs(size, dx=0.0, dy=0.0):
    """The TAN WCS of a light dithered by (dx, dy) pixels."""
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [size / 2 + 1 + dx, size / 2 + 1 + dy]
    w.wcs.cdelt = [-0.4 / 3600, 0.4 / 3600]
    return w


def check_stacks(work, size, seed=3):
    """Each stack's star fluxes against the truth: {filter: (median ratio, spread, n)}.

    The stacks are in e-/s of frames flat-fielded by a superflat normalised to 1 in its
    centre (the median of the central half, `combine.central_level`), so a star's
    expected rate is its true rate times that median of the true flat. Measured: unsaturated stars (peak below the full well in every frame) with no
    other star within 25 px, 40 px or more inside the stack's edge, in an aperture of
    10 px (7 sigma of the PSF) less the median of an annulus 15-25 px. The spread is
    half the 16-84 % range of the ratios.
    """
    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS
    from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture

    _, flat_true, _, stars = night_truth(size, seed)
    sky = night_wcs(size).pixel_to_world_values(stars[:, 0], stars[:, 1])
    sigma = FWHM / 2.3548
    out = {}
    for f in FILTERS:
        path = work / "out_suite" / "night" / "07_stack" / f"stack_{f}.fits"
        with fits.open(path) as h:
            data, w = h[0].data.astype(float), WCS(h[0].header)
        x, y = w.world_to_pixel_values(*sky)
        rate = stars[:, 2] * (HA_SCALE if f == "Ha" else 1.0)
        peak_e = rate / (2 * np.pi * sigma ** 2) * LIGHT_EXPTIME[f] * 1.1 + SKY_RATE[f] * LIGHT_EXPTIME[f]
        d = np.hypot(*(stars[:, None, :2] - stars[None, :, :2]).transpose(2, 0, 1))
        np.fill_diagonal(d, np.inf)
        ny, nx = data.shape
        use = ((peak_e < 0.8 * 60000 * GAIN) & (d.min(axis=1) > 25) & (x > 40) & (y > 40)
               & (x < nx - 41) & (y < ny - 41) & (rate > 1000))
        pos = np.c_[x[use], y[use]]
        flux = ApertureStats(data, CircularAperture(pos, 10.0)).sum
        bkg = ApertureStats(data, CircularAnnulus(pos, 15.0, 25.0)).median
        measured = flux - bkg * np.pi * 10.0 ** 2
        q = size // 4
        ratio = measured / (rate[use] * float(np.median(flat_true[f][q:size - q, q:size - q])))
        lo, med, hi = np.percentile(ratio, [16, 50, 84])
        out[f] = (float(med), float((hi - lo) / 2), int(use.sum()))
    return out


def make_night(work, size, frames, seed=3):
    """Write the raw night and its manifest under ``work`` unless present."""
    import numpy as np
    from astropy.io import fits

    raw, manifest = work / "raw", work / "manifest.yaml"
    if manifest.is_file():
        return
    if work.exists():
        shutil.rmtree(work)
    raw.mkdir(parents=True)
    rng, flat_true, columns, stars = night_truth(size, seed)
    n_bias, n_flat, n_lights = counts(frames)
    ny, nx = size, size + OVERSCAN
    sigma, hw = FWHM / 2.3548, 8
    sy, sx = np.mgrid[-hw:hw + 1, -hw:hw + 1]

    def header(imagetyp, exptime, filt=None):
        h = fits.Header()
        h["IMAGETYP"] = imagetyp
        h["EXPTIME"] = (float(exptime), "s")
        if filt:
            h["FILTER"] = filt
        h["GAIN"] = (GAIN, "e-/ADU")
        h["RDNOISE"] = (READ_NOISE, "e-")
        h["BIASSEC"] = f"[{size + 1}:{nx},1:{ny}]"
        h["TRIMSEC"] = f"[1:{size},1:{size}]"
        return h

    def readout(electrons):
        adu = np.empty((ny, nx))
        adu[:, :size] = electrons / GAIN
        adu[:, size:] = 0.0
        adu += BIAS_LEVEL + rng.normal(0, 2) + columns + rng.normal(0, READ_NOISE / GAIN, adu.shape)
        return np.clip(np.round(adu), 0, 65535).astype(np.uint16)

    def write(name, data, h):
        fits.PrimaryHDU(data, header=h).writeto(raw / name)

    for i in range(n_bias):
        write(f"bias_{i + 1:03d}.fits", readout(np.zeros((size, size))), header("BIAS", 0.0))
    for f in FILTERS:
        for i in range(n_flat):
            level = rng.uniform(20000, 40000)
            e = rng.poisson(level * flat_true[f]).astype(float)
            write(f"flat_{f}_{i + 1:03d}.fits", readout(e), header("FLAT", FLAT_EXPTIME, f))
    for f, n in zip(FILTERS, n_lights, strict=True):
        t = LIGHT_EXPTIME[f]
        for i in range(n):
            dx, dy = rng.uniform(-20, 20, 2)
            rate = np.full((size, size), SKY_RATE[f])
            for x, y, flux in stars:
                x, y = x + dx, y + dy
                ix, iy = int(round(x)), int(round(y))
                y0, y1, x0, x1 = max(iy - hw, 0), min(iy + hw + 1, size), max(ix - hw, 0), min(ix + hw + 1, size)
                if y0 >= y1 or x0 >= x1:
                    continue
                r2 = ((sx + ix - x) ** 2 + (sy + iy - y) ** 2)[y0 - iy + hw:y1 - iy + hw, x0 - ix + hw:x1 - ix + hw]
                scale = HA_SCALE if f == "Ha" else 1.0
                rate[y0:y1, x0:x1] += scale * flux / (2 * np.pi * sigma ** 2) * np.exp(-0.5 * r2 / sigma ** 2)
            e = rng.poisson(np.clip(rate * flat_true[f] * t, 0, 60000 * GAIN)).astype(float)
            n_cr = int(size * size * t / 2048 ** 2)          # ~1 hit per 2048² per s
            py, px = rng.integers(0, size, (2, n_cr))
            e[py, px] += rng.uniform(500, 20000, n_cr)
            e[py, np.minimum(px + 1, size - 1)] += rng.uniform(200, 5000, n_cr)
            w = night_wcs(size, dx, dy)
            h = header("LIGHT", t, f)
            h["OBJECT"] = "bench field"
            h["AIRMASS"] = round(1.1 + 0.02 * i, 3)
            h.update(w.to_header())
            write(f"light_{f}_{i + 1:03d}.fits", readout(e), h)
    manifest.write_text(
        "targets:\n"
        "  night:\n"
        "    description: bench_night.py's synthetic night\n"
        "    raw_dir: raw\n"
        "    filters: {halpha: Ha, continuum: R}\n")


def reference(work, out):
    """The night reduced by hand with ccdproc; writes ``out/stack_<filter>.fits``."""
    import warnings

    import astropy.units as u
    import ccdproc
    import numpy as np
    from astropy.io import fits
    from astropy.nddata import CCDData
    from astropy.wcs import WCS

    warnings.simplefilter("ignore")
    raw = work / "raw"
    files = sorted(raw.glob("*.fits"))
    kind = {p: fits.getheader(p) for p in files}
    first = next(iter(kind.values()))
    oscan, trim = first["BIASSEC"], first["TRIMSEC"]
    clip = dict(sigma_clip=True, sigma_clip_low_thresh=3, sigma_clip_high_thresh=3,
                sigma_clip_func="median", sigma_clip_dev_func="mad_std")

    def read(p):
        return CCDData.read(p, unit="adu")

    def basic(p, **kw):
        return ccdproc.ccd_process(read(p), oscan=oscan, oscan_median=True, oscan_model=None,
                                   trim=trim, **kw)

    biases = [basic(p) for p, h in kind.items() if h["IMAGETYP"] == "BIAS"]
    bias = ccdproc.combine(biases, method="median", **clip)
    del biases
    flats = {}
    for f in FILTERS:
        fl = [basic(p, master_bias=bias) for p, h in kind.items()
              if h["IMAGETYP"] == "FLAT" and h["FILTER"] == f]
        m = ccdproc.combine(fl, method="median", scale=lambda a: 1 / np.median(a), **clip)
        flats[f] = m.divide(np.median(m.data[m.shape[0] // 4:-m.shape[0] // 4,
                                             m.shape[1] // 4:-m.shape[1] // 4]))
    lights = [(p, h) for p, h in kind.items() if h["IMAGETYP"] == "LIGHT"]
    ref_wcs = WCS(lights[0][1])
    shape = bias.shape
    for f in FILTERS:
        done = []
        for p, h in lights:
            if h["FILTER"] != f:
                continue
            # ccd_process applies the gain before the bias (which is in ADU here), and
            # its error=True counts the bias level as Poisson noise: both done apart
            c = basic(p, master_bias=bias, master_flat=flats[f])
            c = ccdproc.gain_correct(c, h["GAIN"] * u.electron / u.adu)
            c = ccdproc.create_deviation(c, readnoise=h["RDNOISE"] * u.electron,
                                         disregard_nan=True)
            c = ccdproc.cosmicray_lacosmic(c, gain=1.0, readnoise=h["RDNOISE"], sigclip=5.0,
                                           objlim=5.0, niter=4, gain_apply=False)
            c.data = c.data - np.median(c.data[~c.mask])
            c.wcs = WCS(h)
            done.append(ccdproc.wcs_project(c, ref_wcs, target_shape=shape))
        stack = ccdproc.combine(done, method="average", sigma_clip=True,
                                sigma_clip_low_thresh=5, sigma_clip_high_thresh=5)
        stack.write(out / f"stack_{f}.fits", overwrite=True)


def measure(cmd, cwd):
    """Run ``cmd``; wall, CPU and peak RSS of it and everything it waited for."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        sys.exit(f"{cmd} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": wall, "cpu": r.ru_utime + r.ru_stime, "rss_mb": r.ru_maxrss / 1024}


def child(what, args):
    work = Path(args[0])
    if what == "make":
        make_night(work, int(args[1]), int(args[2]))
        print(json.dumps({}))
        return
    if what == "check":
        print(json.dumps(check_stacks(work, int(args[1]))))
        return
    out = work / f"out_{what}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    if what == "suite":
        cmd = [sys.executable, "-m", "redux_helpers.cli", "run", "night",
               "--manifest", str(work / "manifest.yaml"), "--products", str(out),
               "--only", args[1], "--no-html"]
        for prm in args[2:]:
            cmd += ["--param", prm]
        os.environ.update(env)
        res = measure(cmd, REPO)
        steps = {}
        for rec in sorted((out / "night" / ".redux").glob("*.json")):
            d = json.loads(rec.read_text())
            if "seconds" in d:
                steps[d["step"]] = d["seconds"]
        res["steps"] = steps
    else:
        os.environ.update(env)
        res = measure([sys.executable, str(Path(__file__).resolve()), "--child", "reference-run",
                       str(work), str(out)], REPO)
    print(json.dumps(res))


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        if sys.argv[2] == "reference-run":
            reference(Path(sys.argv[3]), Path(sys.argv[4]))
            return
        child(sys.argv[2], sys.argv[3:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--frames", type=int, default=60, help="raw frames in total")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--steps", default=STEPS, help="the suite's steps (--only)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a notebook parameter for the suite (repeatable)")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    work = HERE / "_work" / f"night_{a.size}_{a.frames}_thirds"   # the split of counts()
    t0 = time.perf_counter()
    run_child(__file__, "make", work, a.size, a.frames)
    nb, nf, nl = counts(a.frames)
    print(f"# night in {work} ({time.perf_counter() - t0:.1f} s): {nb} biases, {nf} flats "
          f"per filter, lights {dict(zip(FILTERS, nl, strict=True))}", file=sys.stderr)
    loads = []

    def run(v):
        extra = [a.steps, *a.param] if v == "suite" else []
        return run_child(__file__, v, work, *extra)

    res = interleaved(a.variants, a.repeat, run, loads=loads)
    truth = run_child(__file__, "check", work, a.size) if "suite" in res else {}
    steps = sorted({s for r in res.values() for s in r.get("steps", {})})
    print(f"{a.frames} frames of {a.size}x{a.size}; {version_line(loads)}"
          + (f"; suite parameters {' '.join(a.param)}" if a.param else ""))
    print()
    print("| variant | wall (s) | CPU (s) | peak RSS (MB) |"
          + "".join(f" {s[:2]} (s) |" for s in steps))
    print("|---|---:|---:|---:|" + "---:|" * len(steps))
    for v, r in res.items():
        per = [f" {r['steps'][s]:.1f} |" if s in r.get("steps", {}) else " |" for s in steps]
        print(f"| {v} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['rss_mb']:.0f} |" + "".join(per))
    if {"suite", "reference"} <= set(res):
        su, ref = res["suite"], res["reference"]
        print(f"\nsuite / reference: wall {su['wall'] / ref['wall']:.2f}, CPU "
              f"{su['cpu'] / ref['cpu']:.2f}, peak RSS {su['rss_mb'] / ref['rss_mb']:.2f}", end="")
    for f, (med, spread, n) in truth.items():
        print(f"\nthe suite's {f} stack against the truth: star flux / true flux {med:.4f} "
              f"(median of {n} unsaturated isolated stars; scatter {100 * spread:.2f} %)", end="")
    print()


if __name__ == "__main__":
    main()
