"""The demo's space-telescope and integral-field images: HST-like and MUSE-like, with truth.

Step 10 anchors an Hα image to a MUSE Hα map, the way the PHANGS-HST workflow does. The
demo night (`demo`) gains what that needs, made from the same galaxy model, so that every
number of step 10 can be checked against the right answer:

* **HST-like images** at 0.1″ per pixel (four times finer than the ground frames), with a
  sharp PSF (FWHM 0.2″) and their own WCS (rotated 12° from north): a narrow-band Hα
  image (WFC3/UVIS ``F656N``, 17.6 Å wide in the handbook) and two broad-band continuum
  images on either side of the line (``F555W`` and ``F814W``). Each is in e⁻/s with
  HST's flux keywords, ``PHOTFLAM`` (erg s⁻¹ cm⁻² Å⁻¹ per e⁻/s), ``PHOTPLAM`` (pivot
  wavelength, Å) and ``PHOTBW`` (RMS bandwidth, Å), ``INSTRUME``/``DETECTOR``, and an
  ``ERR`` extension. The galaxy's continuum is a power law, f_λ ∝ (λ / 6563 Å)^β with
  β = −0.4, so two continua interpolated in log λ give the continuum at Hα exactly, and
  one alone (which assumes a flat f_λ) misses it by a known amount; the field stars
  have their own β (from −2.5 to +0.5). Broad-band images measure f_λ at their pivot
  wavelength (the demo's filters are taken as narrow enough for that).
* **The narrow-band image is the one that is off**, as it is in PHANGS: its line holds
  [NII] 6548 as well (``HST_NII_SHARE`` of Hα, in the filter's blue wing), the galaxy's
  line sits where the filter lets through less than its mean, so that its effective
  width is ``HST_WIDTH_TRUE_A`` rather than the handbook's 17.6 Å, and its drizzled sky
  was left ``HST_SKY_RATE`` e⁻/s per pixel too high. Continuum-subtracted with the
  handbook's width, its line is ``HST_LINE_SCALE`` × the truth plus a constant: what
  anchoring has to take out.
* **A MUSE-like Hα map** at 0.2″ per spaxel with a broader PSF (FWHM 1.0″), a WCS of its
  own (rotated −8°), in 10⁻²⁰ erg s⁻¹ cm⁻² per spaxel: the true Hα at its resolution,
  plus a small background of its own and noise, ``muse = MUSE_OFFSET + MUSE_SLOPE ×
  true + noise`` with ``MUSE_SLOPE = 1``: the flux reference. With it, a nebula mask
  (each spaxel labelled with the HII region that dominates it, −1 elsewhere) and a
  nebula catalogue (``region_ID``, position, the map's flux in the mask), as PHANGS-MUSE
  provides them.

Files, under the demo's root::

    hst/f656n.fits, f555w.fits, f814w.fits     SCI (e-/s, PHOTFLAM, PHOTPLAM) + ERR
    muse/halpha_map.fits                       DATA + STAT (variance), 1e-20 erg/s/cm2
    muse/nebula_mask.fits, muse/nebulae.ecsv
    truth/halpha_true_hst.fits                 the Hα line on the HST grid, erg/s/cm2/pixel
    truth/halpha_true_muse.fits                the Hα line on the MUSE grid and PSF
    truth/nebulae_truth.ecsv                   per nebula: total flux, flux in its mask,
                                               what MUSE and the HST image should give
    truth/truth.json  ["space"]                the constants below, and the anchoring
                                               fit's right answer (anchor_slope, _offset)

The HII regions, their fluxes and the galaxy are those of the ground frames, so the
line fluxes agree between the chain's 09 and these images. A random generator of its own
(seeded from the demo's seed) keeps the ground frames byte-identical.
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

C_A = 2.99792458e18           # speed of light, Å/s
HALPHA_A = 6562.8
HST_PIXEL = 0.1               # arcsec
HST_FWHM = 0.2                # arcsec
HST_ROTATION = 12.0           # deg, of the HST grid from north
MUSE_PIXEL = 0.2              # arcsec
MUSE_FWHM = 1.0               # arcsec
MUSE_ROTATION = -8.0          # deg
MUSE_SLOPE = 1.0              # muse = MUSE_OFFSET + MUSE_SLOPE * true  (per spaxel)
MUSE_OFFSET = 2.0e-19         # erg/s/cm2 per spaxel: a small background, 0.2 sigma
#: what is off in the HST narrow band: [NII] 6548 in its blue wing (share of Halpha), the
#: filter's effective width for the galaxy's line (A, the handbook says 17.6) and the sky
#: left in the drizzled image (e-/s per pixel)
HST_NII_SHARE = 0.06
HST_WIDTH_TRUE_A = 16.4
HST_SKY_RATE = 0.02
MUSE_NOISE = 1.0e-18          # erg/s/cm2 per spaxel, 1 sigma
MUSE_UNIT = 1e-20
GALAXY_BETA = -0.4            # f_lambda ∝ lambda^beta
#: HST-like filters: pivot (Å), PHOTFLAM (erg/s/cm2/Å per e-/s), rectangular width (Å),
#: exposure (s) and the noise of one pixel (e-/s): sky and read noise of a drizzled image
HST_FILTERS = {
    "F656N": {"pivot_A": 6561.4, "photflam": 1.1e-17, "width_A": 17.6, "exptime": 1500.0,
              "noise": 0.012, "photbw": 5.5},
    "F555W": {"pivot_A": 5308.4, "photflam": 1.8e-19, "width_A": 1565.0, "exptime": 600.0,
              "noise": 0.05, "photbw": 470.0},
    "F814W": {"pivot_A": 8039.1, "photflam": 1.5e-19, "width_A": 1536.0, "exptime": 600.0,
              "noise": 0.05, "photbw": 650.0},
}
#: the HST line, continuum-subtracted with the handbook's width: this x the truth + a constant
HST_LINE_SCALE = (1 + HST_NII_SHARE) * HST_FILTERS["F656N"]["width_A"] / HST_WIDTH_TRUE_A
R_PIVOT_A, R_ZP = 6400.0, 25.0   # the ground R filter: what the galaxy model's rates mean


def _tan_wcs(ra, dec, shape, scale_arcsec, rotation_deg):
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    s = scale_arcsec / 3600.0
    t = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    w.wcs.cd = np.array([[-s, 0.0], [0.0, s]]) @ rot
    return w


def _flam_per_rate_r():
    """f_lambda at the R pivot of 1 e-/s in the ground R filter (AB zero point)."""
    return 10 ** (-0.4 * (R_ZP + 48.6)) * C_A / R_PIVOT_A ** 2


def _field(night, pixel_arcsec, ground_arcsec):
    """Side (pixels) of a square grid that holds every HII region with a margin."""
    r = np.hypot(night.hii["x"] - night.xc, night.hii["y"] - night.yc).max()
    side_arcsec = 2 * (r + 10) * ground_arcsec
    return int(np.ceil(side_arcsec / pixel_arcsec / 2)) * 2


def _line_on_grid(night, wcs, shape, pixel_arcsec, ground_arcsec, fwhm_arcsec):
    """The Hα line of every HII region on a grid (erg/s/cm2/pixel) at a PSF FWHM."""
    x, y = wcs.world_to_pixel_values(night.hii["ra"], night.hii["dec"])
    scale = ground_arcsec / pixel_arcsec
    psf = fwhm_arcsec / pixel_arcsec / 2.3548
    sigma = np.hypot(np.asarray(night.hii["sigma"]) * scale, psf)
    return night.gauss(np.zeros(shape), x, y, np.asarray(night.hii["halpha_flux"]), sigma)


def write_space_images(root, night, *, ground_arcsec, seed):
    """Write the HST-like and MUSE-like images and their truth under ``root``.

    Parameters
    ----------
    root : Path
        The demo's (temporary) root folder; ``hst/``, ``muse/`` and ``truth/`` go in it.
    night : demo._Night
        The night whose galaxy, stars and HII regions are drawn.
    ground_arcsec : float
        Pixel scale of the ground frames (the galaxy model's coordinates).
    seed : int
        Seed of this module's own random generator.

    Returns
    -------
    dict
        The constants and per-image facts, for ``truth.json``.
    """
    rng = np.random.default_rng(seed + 7919)
    (root / "hst").mkdir()
    (root / "muse").mkdir()
    facts = _write_hst(root, night, rng, ground_arcsec=ground_arcsec)
    facts.update(_write_muse(root, night, rng, ground_arcsec=ground_arcsec))
    return facts


def _write_hst(root, night, rng, *, ground_arcsec):
    """The HST-like F555W/F656N/F814W images, the true line and continuum on their grid."""
    gauss = night.gauss                   # the demo's Gaussian stamps
    # --- the HST-like grid and the model on it -----------------------------------------
    n_hst = _field(night, HST_PIXEL, ground_arcsec)
    shape = (n_hst, n_hst)
    # the grid's centre is a little off the galaxy's, as a real pointing is
    ra_c, dec_c = night.ref_wcs.pixel_to_world_values(night.xc + 1.3, night.yc - 0.9)
    hst_wcs = _tan_wcs(float(ra_c), float(dec_c), shape, HST_PIXEL, HST_ROTATION)
    yy, xx = np.mgrid[0:n_hst, 0:n_hst].astype(float)
    ra, dec = hst_wcs.pixel_to_world_values(xx, yy)
    xr, yr = night.ref_wcs.world_to_pixel_values(ra, dec)
    area = (HST_PIXEL / ground_arcsec) ** 2
    # galaxy continuum: f_lambda at the R pivot per HST pixel, then a power law in lambda
    gal_flam_r = night.galaxy_rate(xr, yr, "R") * area * _flam_per_rate_r()
    line = _line_on_grid(night, hst_wcs, shape, HST_PIXEL, ground_arcsec, HST_FWHM)
    sx, sy = hst_wcs.world_to_pixel_values(night.stars["ra"], night.stars["dec"])
    inside = (sx > -5) & (sx < n_hst + 5) & (sy > -5) & (sy < n_hst + 5)
    star_flam_r = np.asarray(night.stars["rate_R"]) * _flam_per_rate_r()
    star_beta = rng.uniform(-2.5, 0.5, len(night.stars))
    psf = HST_FWHM / HST_PIXEL / 2.3548
    facts = {"hst": {}, "hst_pixel_arcsec": HST_PIXEL, "hst_fwhm_arcsec": HST_FWHM,
             "galaxy_beta": GALAXY_BETA}
    for name, f in HST_FILTERS.items():
        lam = f["pivot_A"]
        flam = gal_flam_r * (lam / R_PIVOT_A) ** GALAXY_BETA
        stars = gauss(np.zeros(shape), sx[inside], sy[inside],
                              star_flam_r[inside] * (lam / R_PIVOT_A) ** star_beta[inside],
                              psf)
        flam = flam + stars
        if name == "F656N":
            # the line and its [NII], spread over the filter's true effective width
            flam = flam + line * (1 + HST_NII_SHARE) / HST_WIDTH_TRUE_A
        rate = flam / f["photflam"] + (HST_SKY_RATE if name == "F656N" else 0.0)
        err = np.sqrt(f["noise"] ** 2 + np.clip(rate, 0, None) / f["exptime"])
        data = rate + rng.normal(0.0, 1.0, shape) * err
        h = fits.Header()
        h["BUNIT"] = "ELECTRONS/S"
        h["FILTER"] = name
        h["EXPTIME"] = f["exptime"]
        h["PHOTFLAM"] = (f["photflam"], "erg/s/cm2/Angstrom per e-/s")
        h["PHOTPLAM"] = (f["pivot_A"], "pivot wavelength, Angstrom")
        h["PHOTBW"] = (f["photbw"], "RMS bandwidth, Angstrom")
        h["FWHM"] = (HST_FWHM, "arcsec, PSF of the image")
        h["TELESCOP"] = "redux demo space telescope (synthetic)"
        h.update(hst_wcs.to_header())
        prim = fits.Header({"INSTRUME": "WFC3", "DETECTOR": "UVIS", "FILTER": name})
        hdus = fits.HDUList([fits.PrimaryHDU(header=prim),
                             fits.ImageHDU(data.astype(np.float32), h, name="SCI"),
                             fits.ImageHDU(err.astype(np.float32), h, name="ERR")])
        hdus.writeto(root / "hst" / f"{name.lower()}.fits")
        facts["hst"][name] = {k: f[k] for k in ("pivot_A", "photflam", "width_A", "photbw")}
    h = fits.Header()
    h["BUNIT"] = "erg / (s cm2)"
    h.update(hst_wcs.to_header())
    fits.PrimaryHDU(line.astype(np.float32), h).writeto(root / "truth" / "halpha_true_hst.fits")
    # the continuum at Halpha, for checking continuum subtraction
    cont_ha = (gal_flam_r * (HALPHA_A / R_PIVOT_A) ** GALAXY_BETA)
    fits.PrimaryHDU(cont_ha.astype(np.float32), h).writeto(
        root / "truth" / "continuum_flam_hst.fits")
    facts["hst_shape"] = list(shape)
    return facts


def _write_muse(root, night, rng, *, ground_arcsec):
    """The MUSE-like Halpha map, its nebula mask and catalogue, and their truth."""
    # --- the MUSE-like map ---------------------------------------------------------------
    n_muse = _field(night, MUSE_PIXEL, ground_arcsec) - 6     # a slightly smaller field
    mshape = (n_muse, n_muse)
    ra_m, dec_m = night.ref_wcs.pixel_to_world_values(night.xc - 2.1, night.yc + 1.7)
    muse_wcs = _tan_wcs(float(ra_m), float(dec_m), mshape, MUSE_PIXEL, MUSE_ROTATION)
    true_m = _line_on_grid(night, muse_wcs, mshape, MUSE_PIXEL, ground_arcsec, MUSE_FWHM)
    muse = MUSE_OFFSET + MUSE_SLOPE * true_m + rng.normal(0.0, MUSE_NOISE, mshape)
    h = fits.Header()
    h["BUNIT"] = "10**(-20)*erg/s/cm**2"
    h["FWHM"] = (MUSE_FWHM, "arcsec, PSF of the map")
    h["TELESCOP"] = "redux demo integral-field unit (synthetic)"
    h.update(muse_wcs.to_header())
    hv = h.copy()
    hv["BUNIT"] = "10**(-40)*erg**2/s**2/cm**4"
    fits.HDUList([fits.PrimaryHDU(),
                  fits.ImageHDU((muse / MUSE_UNIT).astype(np.float32), h, name="DATA"),
                  fits.ImageHDU(np.full(mshape, (MUSE_NOISE / MUSE_UNIT) ** 2, np.float32),
                                hv, name="STAT")]).writeto(root / "muse" / "halpha_map.fits")
    ht = fits.Header()
    ht["BUNIT"] = "erg / (s cm2)"
    ht.update(muse_wcs.to_header())
    fits.PrimaryHDU(true_m.astype(np.float32), ht).writeto(
        root / "truth" / "halpha_true_muse.fits")
    n_nebulae, sky_pixel, sky_spaxel = _write_nebulae(root, night, muse_wcs, muse, true_m,
                                                      ground_arcsec=ground_arcsec)
    return {"muse_pixel_arcsec": MUSE_PIXEL, "muse_fwhm_arcsec": MUSE_FWHM,
            "muse_slope": MUSE_SLOPE, "muse_offset": MUSE_OFFSET,
            "muse_offset_per_arcsec2": MUSE_OFFSET / MUSE_PIXEL ** 2,
            "muse_noise": MUSE_NOISE,
            "hst_nii_share": HST_NII_SHARE, "hst_width_true_A": HST_WIDTH_TRUE_A,
            "hst_sky_rate": HST_SKY_RATE, "hst_line_scale": HST_LINE_SCALE,
            "hst_sky_line_per_pixel": sky_pixel,
            # the anchoring fit's right answer: MUSE = offset + slope x HST line
            "anchor_slope": MUSE_SLOPE / HST_LINE_SCALE,
            "anchor_offset": MUSE_OFFSET - MUSE_SLOPE / HST_LINE_SCALE * sky_spaxel,
            "muse_shape": list(mshape), "n_nebulae": n_nebulae}


def _write_nebulae(root, night, muse_wcs, muse, true_m, *, ground_arcsec):
    """The MUSE nebula mask and catalogue, and their truth; (n nebulae, the HST sky left in
    as a line flux per HST pixel and per MUSE spaxel)."""
    gauss = night.gauss
    mshape = muse.shape
    # nebula mask: each spaxel goes to the region that gives it most light, where that
    # light is above 3 sigma of the map's noise
    x, y = muse_wcs.world_to_pixel_values(night.hii["ra"], night.hii["dec"])
    scale = ground_arcsec / MUSE_PIXEL
    sigma = np.hypot(np.asarray(night.hii["sigma"]) * scale, MUSE_FWHM / MUSE_PIXEL / 2.3548)
    best = np.zeros(mshape)
    labels = np.full(mshape, -1, np.int32)
    for rid, xi, yi, fi, si in zip(night.hii["id"], x, y, night.hii["halpha_flux"], sigma,
                                   strict=True):
        one = gauss(np.zeros(mshape), [xi], [yi], [fi], si)
        take = (one > best) & (one > 3 * MUSE_NOISE)
        labels[take] = rid
        best = np.maximum(best, one)
    hm = fits.Header()
    hm.update(muse_wcs.to_header())
    fits.PrimaryHDU(labels, hm).writeto(root / "muse" / "nebula_mask.fits")
    ids = np.asarray(night.hii["id"])
    # the HST sky left in, as a line flux per pixel (handbook width) and per MUSE spaxel
    f656 = HST_FILTERS["F656N"]
    sky_pixel = HST_SKY_RATE * f656["photflam"] * f656["width_A"]
    sky_spaxel = sky_pixel * (MUSE_PIXEL / HST_PIXEL) ** 2
    from scipy import ndimage
    in_mask_true = ndimage.sum_labels(true_m, labels, ids)
    in_mask_muse = ndimage.sum_labels(muse, labels, ids)
    npix = ndimage.sum_labels(np.ones(mshape), labels, ids)
    keep = npix > 0
    cat = Table({"region_ID": ids[keep], "ra": np.asarray(night.hii["ra"])[keep],
                 "dec": np.asarray(night.hii["dec"])[keep],
                 "HA6562_FLUX": in_mask_muse[keep] / MUSE_UNIT,
                 "HA6562_FLUX_ERR": np.sqrt(npix[keep]) * MUSE_NOISE / MUSE_UNIT},
                meta={"comment": "fluxes in 1e-20 erg/s/cm2: the map summed over each "
                                 "region's mask"})
    cat["HA6562_FLUX"].unit = cat["HA6562_FLUX_ERR"].unit = "1e-20 erg / (s cm2)"
    cat.write(root / "muse" / "nebulae.ecsv")
    Table({"region_ID": ids[keep], "npix": npix[keep].astype(int),
           "flux_total": np.asarray(night.hii["halpha_flux"])[keep],
           "flux_true_in_mask": in_mask_true[keep],
           "flux_muse_expected": MUSE_OFFSET * npix[keep] + MUSE_SLOPE * in_mask_true[keep],
           "flux_hst_expected": sky_spaxel * npix[keep] + HST_LINE_SCALE * in_mask_true[keep]},
          meta={"comment": "erg/s/cm2; flux_true_in_mask: the true line at the MUSE PSF "
                           "summed over the region's mask; flux_hst_expected: what the "
                           "HST line image (handbook width, two continua) gives there"}).write(
        root / "truth" / "nebulae_truth.ecsv")
    return int(keep.sum()), sky_pixel, sky_spaxel
