"""A small synthetic HST/MUSE pair made apart from the demo's conventions, with its truth.

Not the demo's galaxy, grid or stamps: an ACS/WFC-like F658N (Hα + [NII]) and F814W
pair at 0.05″ per pixel with a 0.09″ PSF, and a MUSE-like Hα map at 0.2″ with a 0.75″
PSF, on grids rotated 25° and −10°, around another position on the sky. Sources are
pixel-integrated Gaussians (erf differences), not point-sampled.

The headers say only what a drizzled HST product and a bare Hα map say: the HST images
``INSTRUME``, ``DETECTOR``, the filter, ``PHOTFLAM``, ``PHOTPLAM`` and ``PHOTBW`` (no
width, no FWHM); the MUSE map its ``BUNIT`` and WCS (no FWHM). Step 10 must find the
filter's width in its table, measure the image's resolution from its stars and fit the
map's.

What is wrong, on purpose, is the HST image: its line holds [NII] (``NII_SHARE`` of
Hα, inside ACS F658N's 78 Å) and its sky is left ``SKY_RATE`` e⁻/s too high. The MUSE map
is the truth at its resolution plus noise. Anchoring should therefore bring the
nebulae to the truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from scipy.special import erf

RA0, DEC0 = 150.1163, 2.2058          # a field of its own
HST_PIX, HST_N, HST_ROT, HST_FWHM = 0.05, 320, 25.0, 0.09
MUSE_PIX, MUSE_N, MUSE_ROT, MUSE_FWHM = 0.2, 72, -10.0, 0.75
WIDTH_A = 78.0                      # ACS/WFC F658N, the handbook's width
PHOT = {"F658N": (1.9513e-18, 6583.95, 37.01), "F814W": (7.0486e-20, 8044.99, 653.06)}
NII_SHARE = 0.30                    # [NII] 6548+6583 / Halpha inside the filter
SKY_RATE = 0.002                    # e-/s per pixel left in the F658N image
HST_NOISE = {"F658N": 0.004, "F814W": 0.02}     # e-/s per pixel
MUSE_NOISE = 4e-19                  # erg/s/cm2 per spaxel
MUSE_UNIT = 1e-20


def _wcs(n, scale, rot):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [RA0, DEC0]
    w.wcs.crpix = [n / 2 + 0.3, n / 2 - 0.7]
    t = np.deg2rad(rot)
    s = scale / 3600
    w.wcs.cd = [[-s * np.cos(t), s * np.sin(t)], [s * np.sin(t), s * np.cos(t)]]
    return w


def _stamps(n, x, y, flux, sigma):
    """Sum of pixel-integrated circular Gaussians (flux per pixel) on an n x n grid."""
    edges = np.arange(n + 1) - 0.5
    out = np.zeros((n, n))
    for xi, yi, fi, si in zip(x, y, flux, sigma, strict=True):
        gx = np.diff(0.5 * erf((edges - xi) / (np.sqrt(2) * si)))
        gy = np.diff(0.5 * erf((edges - yi) / (np.sqrt(2) * si)))
        out += fi * np.outer(gy, gx)
    return out


def make(root, *, seed=11) -> dict:
    """Write the set under ``root``; return the paths and the truth.

    Returns
    -------
    dict
        ``hst_halpha``, ``hst_continuum``, ``muse_map``, ``nebula_mask`` (paths) and
        ``truth``: per nebula id, the true Hα flux summed in its mask at MUSE's
        resolution (erg s⁻¹ cm⁻²).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    hw, mw = _wcs(HST_N, HST_PIX, HST_ROT), _wcs(MUSE_N, MUSE_PIX, MUSE_ROT)
    # nebulae, placed on the sky inside MUSE's field (arcsec from the centre)
    n_neb = 28
    r = 5.6 * np.sqrt(rng.uniform(0.02, 1.0, n_neb))
    phi = rng.uniform(0, 2 * np.pi, n_neb)
    dra, ddec = r * np.cos(phi), r * np.sin(phi)
    ra = RA0 + dra / 3600 / np.cos(np.deg2rad(DEC0))
    dec = DEC0 + ddec / 3600
    size = rng.uniform(0.15, 0.45, n_neb)                       # arcsec, sigma
    flux = 10 ** rng.uniform(np.log10(3e-16), np.log10(6e-15), n_neb)
    # stars: flat f_lambda, so one continuum image subtracts them; between the nebulae
    n_star = 16
    sra = RA0 + rng.uniform(-7, 7, n_star) / 3600 / np.cos(np.deg2rad(DEC0))
    sdec = DEC0 + rng.uniform(-7, 7, n_star) / 3600
    sflam = 10 ** rng.uniform(-17.0, -16.0, n_star)             # erg/s/cm2/A, total
    # the HST images
    sig_psf = HST_FWHM / 2.3548
    hx, hy = hw.world_to_pixel_values(ra, dec)
    line_true = _stamps(HST_N, hx, hy, flux, np.hypot(size, sig_psf) / HST_PIX)
    sx, sy = hw.world_to_pixel_values(sra, sdec)
    stars = _stamps(HST_N, sx, sy, sflam, np.full(n_star, sig_psf / HST_PIX))
    yy, xx = np.mgrid[0:HST_N, 0:HST_N]
    cx, cy = hw.world_to_pixel_values(RA0, DEC0)
    rad = np.hypot(xx - cx, (yy - cy) / 0.7) * HST_PIX
    disc = 3e-19 * np.exp(-rad / 4.0)                          # f_lambda per pixel, flat
    paths = {}
    for name, filt_keys in (("F658N", {"FILTER": "F658N"}),
                            ("F814W", {"FILTER1": "CLEAR1L", "FILTER2": "F814W"})):
        photflam, photplam, photbw = PHOT[name]
        flam = disc + stars
        if name == "F658N":
            flam = flam + line_true * (1 + NII_SHARE) / WIDTH_A
        rate = flam / photflam + (SKY_RATE if name == "F658N" else 0.0)
        err = np.sqrt(HST_NOISE[name] ** 2 + np.clip(rate, 0, None) / 1400.0)
        data = rate + rng.normal(0, 1, rate.shape) * err
        prim = fits.Header({"TELESCOP": "HST", "INSTRUME": "ACS", "DETECTOR": "WFC", **filt_keys})
        h = fits.Header({"BUNIT": "ELECTRONS/S", "PHOTFLAM": photflam, "PHOTPLAM": photplam,
                         "PHOTBW": photbw})
        h.update(hw.to_header())
        path = root / f"synth_acs_{name.lower()}_drc.fits"
        fits.HDUList([fits.PrimaryHDU(header=prim),
                      fits.ImageHDU(data.astype(np.float32), h, name="SCI"),
                      fits.ImageHDU(err.astype(np.float32), h, name="ERR")]).writeto(path)
        paths[name] = path
    # the MUSE map: the truth at its own resolution, and noise
    mx, my = mw.world_to_pixel_values(ra, dec)
    sig_m = np.hypot(size, MUSE_FWHM / 2.3548) / MUSE_PIX
    true_m = _stamps(MUSE_N, mx, my, flux, sig_m)
    muse = true_m + rng.normal(0, MUSE_NOISE, true_m.shape)
    hm = fits.Header({"BUNIT": "10**(-20)*erg/s/cm**2"})
    hm.update(mw.to_header())
    hv = hm.copy()
    hv["BUNIT"] = "10**(-40)*erg**2/s**2/cm**4"
    muse_path = root / "ngc9999_halpha_map.fits"
    fits.HDUList([fits.PrimaryHDU(),
                  fits.ImageHDU((muse / MUSE_UNIT).astype(np.float32), hm, name="DATA"),
                  fits.ImageHDU(np.full(true_m.shape, (MUSE_NOISE / MUSE_UNIT) ** 2, np.float32),
                                hv, name="STAT")]).writeto(muse_path)
    # the nebula mask: each spaxel to the nebula that gives it most light, above 3 sigma
    best = np.zeros(true_m.shape)
    labels = np.full(true_m.shape, -1, np.int32)
    for i in range(n_neb):
        one = _stamps(MUSE_N, [mx[i]], [my[i]], [flux[i]], [sig_m[i]])
        take = (one > best) & (one > 3 * MUSE_NOISE)
        labels[take] = i
        best = np.maximum(best, one)
    mask_path = root / "ngc9999_nebula_mask.fits"
    fits.PrimaryHDU(labels, mw.to_header()).writeto(mask_path)
    truth = {i: float(true_m[labels == i].sum()) for i in range(n_neb) if (labels == i).any()}
    return {"hst_halpha": paths["F658N"], "hst_continuum": paths["F814W"],
            "muse_map": muse_path, "nebula_mask": mask_path, "truth": truth,
            "hst_fwhm_arcsec": HST_FWHM, "muse_fwhm_arcsec": MUSE_FWHM}
