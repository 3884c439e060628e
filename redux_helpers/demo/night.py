"""Writing the demo night: raw frames as a camera writes them, and the truth beside them."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
from astropy.io import fits

from .model import (
    BANDPASSES,
    BIAS_LEVEL,
    CCD_TEMP,
    CONT_SCALE,
    DARK_EXPTIMES,
    DEMO_VERSION,
    EXPTIME,
    EXTINCTION,
    FILTERS,
    FLAT_EXPTIME,
    GAIN,
    GALAXY,
    HALPHA_CGS_PER_RATE,
    LINE_IN_R,
    OVERSCAN_COLS,
    OVERSCAN_SKIP,
    PIXEL_SCALE,
    READ_NOISE,
    SATURATE,
    SKY_RATE,
    STD_AIRMASSES,
    STD_EXPTIME,
    ZERO_POINT,
    DemoConfig,
)
from .scene import Night, frame_wcs
from .space import write_space_images

log = logging.getLogger(__name__)


def _header(cfg: DemoConfig, imagetyp, obj, exptime, *, filt=None, airmass=None,
            wcs=None, temp=CCD_TEMP):
    h = fits.Header()
    h["IMAGETYP"] = imagetyp
    h["OBJECT"] = obj
    h["EXPTIME"] = (float(exptime), "s")
    if filt:
        h["FILTER"] = filt
    h["DATE-OBS"] = ""
    h["GAIN"] = (GAIN, "e-/ADU")
    h["RDNOISE"] = (READ_NOISE, "e-")
    h["XBINNING"] = 1
    h["YBINNING"] = 1
    h["CCD-TEMP"] = (round(temp, 2), "deg C")
    n = cfg.size
    h["BIASSEC"] = f"[{n + OVERSCAN_SKIP + 1}:{n + OVERSCAN_COLS},1:{n}]"
    h["TRIMSEC"] = f"[1:{n},1:{n}]"
    h["INSTRUME"] = "redux demo camera"
    h["TELESCOP"] = "redux 1.0m (synthetic)"
    if airmass is not None:
        h["AIRMASS"] = round(float(airmass), 4)
    if wcs is not None:
        h.update(wcs.to_header())
    return h


def make_demo(root, config: DemoConfig | None = None) -> Path:
    """Make the demo night under ``root`` (raw frames, standards catalogue, truth).

    The whole folder is written to a temporary name and renamed when complete.
    The same ``config`` always gives byte-identical frames.
    """
    cfg = config or DemoConfig()
    root = Path(root)
    tmp = root.with_name(f".{root.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    raw, truth = tmp / "raw", tmp / "truth"
    (truth / "frames").mkdir(parents=True)
    raw.mkdir()
    night = Night(cfg)
    n = cfg.size
    out = _Frames(cfg, night, raw, truth)
    _calibration_frames(cfg, night, out)
    _sky_frames(cfg, night, out)
    frames = out.facts
    if cfg.broken:   # a transfer cut short: the last R light loses the second half of its data
        bad = raw / f"ngc_demo_R_{cfg.n_light:03d}.fits"
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
        frames[bad.name]["broken"] = "truncated to half its size"
    _write_image(truth / "bias_pattern.fits", night.bias_pattern, "adu")
    _write_image(truth / "dark_current.fits", night.dark_current, "electron/s")
    for f in FILTERS:
        _write_image(truth / f"flat_{f}.fits", night.flats[f], "")
        _write_image(truth / f"scene_{f}.fits", night.scene(f, seeing_fwhm=3.2), "electron/s")
    night.hot.write(truth / "hot_pixels.ecsv")
    night.stars.write(truth / "stars.ecsv")
    night.hii.write(truth / "hii_regions.ecsv")
    night.standards.write(tmp / "standards.ecsv")
    space = write_space_images(tmp, night, ground_arcsec=PIXEL_SCALE, seed=cfg.seed)
    facts = {
        "demo_version": DEMO_VERSION, "config": asdict(cfg),
        "gain": GAIN, "read_noise": READ_NOISE, "bias_level": BIAS_LEVEL,
        "saturate": SATURATE, "pixel_scale": PIXEL_SCALE, "zero_point": ZERO_POINT,
        "extinction": EXTINCTION, "sky_rate": SKY_RATE, "cont_scale": CONT_SCALE,
        "line_in_R": LINE_IN_R, "halpha_cgs_per_rate": HALPHA_CGS_PER_RATE,
        "bandpasses": BANDPASSES,
        "galaxy": {**GALAXY, "x": night.xc, "y": night.yc, "scale_length_px": night.h},
        "dead_columns": night.dead_columns, "frames": frames,
        "trimmed_shape": [n, n], "space": space,
    }
    (truth / "truth.json").write_text(json.dumps(facts, indent=1))
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    log.info("made the demo night in %s (%d frames)", root, len(frames))
    return root




class _Frames:
    """Writes the night's raw frames in observing order, with a clock, and their facts."""

    def __init__(self, cfg, night, raw, truth):
        self.cfg, self.night, self.raw, self.truth = cfg, night, raw, truth
        self.facts, self.minute = {}, 18 * 60.0

    def write(self, name, data, header, **facts):
        header["DATE-OBS"] = _iso(self.minute)
        self.minute += header["EXPTIME"] / 60.0 + 0.5
        fits.PrimaryHDU(data, header=header).writeto(self.raw / name)
        self.facts[name] = facts

    def observe(self, name, f, kind, *, offset, rot, airmass, fwhm, t, science, ref_wcs, obj):
        """One exposure of the sky through filter f: raw frame, noiseless rate, CR mask."""
        cfg, night, truth = self.cfg, self.night, self.truth
        rate = night.scene(f, offset=offset, rotation_deg=rot, seeing_fwhm=fwhm,
                           airmass=airmass, science=science) + SKY_RATE[f]
        e = night.expose(rate, t, flat=night.flats[f])
        cr = night.cosmic_rays(t)
        wcs = frame_wcs(ref_wcs, night.shape, offset, rot)
        raw = night.readout(e + cr)
        temp = CCD_TEMP + night.rng.normal(0, 0.2) if science else CCD_TEMP
        self.write(name, raw, _header(cfg, "LIGHT", obj, t, filt=f, airmass=airmass, wcs=wcs,
                                      temp=temp),
                   kind=kind, filter=f, offset=list(offset), rotation_deg=rot, airmass=airmass,
                   fwhm=fwhm, exptime=t)
        stem = name.removesuffix(".fits")
        _write_image(truth / "frames" / f"{stem}_rate.fits", rate, "electron/s")
        _write_image(truth / "frames" / f"{stem}_crmask.fits", (cr > 0).astype(np.uint8), "")


def _calibration_frames(cfg, night, out):
    """Biases, darks at each exposure time, and dome flats of every filter."""
    write = out.write
    zero = np.zeros(night.shape)
    for i in range(cfg.n_bias):
        write(f"bias_{i + 1:03d}.fits", night.readout(zero),
              _header(cfg, "BIAS", "bias", 0.0), kind="bias")
    for t in DARK_EXPTIMES:
        for i in range(cfg.n_dark):
            e = night.rng.poisson(night.dark_current * t).astype(float)
            temp = CCD_TEMP + night.rng.normal(0, 0.1)
            write(f"dark_{int(t):04d}s_{i + 1:03d}.fits", night.readout(e),
                  _header(cfg, "DARK", "dark", t, temp=temp), kind="dark")
    for f in FILTERS:
        for i in range(cfg.n_flat):
            level_e = night.rng.uniform(15000, 35000) * GAIN   # each flat at its own level
            e = night.expose(np.full(night.shape, level_e / FLAT_EXPTIME), FLAT_EXPTIME,
                             flat=night.flats[f])
            write(f"flat_{f}_{i + 1:03d}.fits", night.readout(e),
                  _header(cfg, "FLAT", f"dome flat {f}", FLAT_EXPTIME, filt=f),
                  kind="flat", filter=f, level_e=level_e)


def _sky_frames(cfg, night, out):
    """Dithered science frames (the last of a filter may be rotated), then standards."""
    observe = out.observe
    # science frames: dithers with non-integer offsets; the last may be rotated
    amp = max(8.0, 20.0 * night.scale)
    for f in FILTERS:
        for i in range(cfg.n_light):
            offset = (0.0, 0.0) if i == 0 else tuple(night.rng.uniform(-amp, amp, 2))
            rot = cfg.rotation_deg if (i == cfg.n_light - 1 and i > 0) else 0.0
            airmass = night.rng.uniform(1.15, 1.45)
            observe(f"ngc_demo_{f}_{i + 1:03d}.fits", f, "light", offset=offset, rot=rot,
                    airmass=airmass, fwhm=night.rng.uniform(2.9, 3.6), t=EXPTIME[f],
                    science=True, ref_wcs=night.ref_wcs, obj="NGC DEMO")
    # standard stars at three airmasses per filter
    for f in FILTERS:
        for j, airmass in enumerate(STD_AIRMASSES):
            offset = tuple(night.rng.uniform(-5, 5, 2))
            observe(f"std_SA98_{f}_{j + 1:03d}.fits", f, "standard", offset=offset, rot=0.0,
                    airmass=airmass, fwhm=night.rng.uniform(2.9, 3.6), t=STD_EXPTIME[f],
                    science=False, ref_wcs=night.std_wcs, obj="SA 98 standard")


def _iso(minute):
    day, rest = divmod(minute, 24 * 60)
    hh, mm = divmod(rest, 60)
    sec = (mm - int(mm)) * 60
    return f"2024-05-{3 + int(day):02d}T{int(hh):02d}:{int(mm):02d}:{sec:06.3f}"




def _write_image(path, data, unit):
    h = fits.Header()
    if unit:
        h["BUNIT"] = unit
    fits.PrimaryHDU(np.asarray(data, dtype=np.float32 if data.dtype.kind == "f" else data.dtype),
                    header=h).writeto(path)


def _config(config) -> DemoConfig:
    return DemoConfig(**config) if isinstance(config, dict) else (config or DemoConfig())


def is_current(root, config: DemoConfig | dict | None = None) -> bool:
    """Whether ``root`` holds the demo of this version made with these settings."""
    facts = Path(root) / "truth" / "truth.json"
    if not facts.is_file():
        return False
    old = json.loads(facts.read_text())
    return old.get("demo_version") == DEMO_VERSION and old.get("config") == asdict(_config(config))


def ensure_demo(root, config: DemoConfig | dict | None = None) -> Path:
    """Make the demo under ``root`` unless an identical one is already there."""
    cfg, root = _config(config), Path(root)
    if is_current(root, cfg):
        return root
    if (root / "truth" / "truth.json").is_file():
        log.info("demo in %s was made with other settings; making it again", root)
    log.info("making the demo night (%d x %d pixels) in %s", cfg.size, cfg.size, root)
    make_demo(root, cfg)
    return root


