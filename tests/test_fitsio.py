"""Reading frames that can't be read, and writing products whole."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from redux_helpers import fitsio, masks
from redux_helpers.errors import FrameError


def _frame(path, shape=(40, 50)):
    fits.PrimaryHDU(np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)).writeto(path)
    return path


def test_truncated_fits_names_the_file(tmp_path):
    p = _frame(tmp_path / "t.fits", (200, 200))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(FrameError, match=r"t\.fits is truncated.*exclude"):
        fitsio.read_frame(p)


def test_not_fits_names_the_file(tmp_path):
    p = tmp_path / "notes.fits"
    p.write_text("this is a text file")
    with pytest.raises(FrameError, match=r"notes\.fits is not a readable FITS file"):
        fitsio.read_frame(p)


def test_unsigned_raw_is_scaled(tmp_path):
    p = _frame(tmp_path / "u.fits")
    data, header = fitsio.read_frame(p, overrides={"EXPTIME": 30})
    assert data.dtype == np.float32 and data[0, 1] == 1.0 and data.max() == 1999.0
    assert header["EXPTIME"] == 30


def test_product_roundtrip_through_ccddata(tmp_path):
    data = np.full((5, 6), 3.0)
    mask = masks.flag(np.zeros((5, 6), np.uint16), data > 0, "COSMIC")
    mask = masks.flag(mask, np.eye(5, 6, dtype=bool), "SATURATED")
    out = fitsio.write_ccd(tmp_path / "p.fits", data, fits.Header({"OBJECT": "x"}),
                           uncertainty=np.ones((5, 6)) * 0.5, mask=mask,
                           unit="electron", mask_header=masks.header())
    ccd = CCDData.read(out)
    assert ccd.unit == "electron" and ccd.uncertainty.array[0, 0] == 0.5
    assert bool(ccd.mask[0, 0]) and ccd.mask.sum() == 30   # CCDData reads the mask as bool
    bits = fitsio.read_product(out).mask                        # redux keeps the named bits
    assert int(bits[0, 0]) == masks.bit("COSMIC") + masks.bit("SATURATED")
    assert int(bits[0, 1]) == masks.bit("COSMIC")
    assert fits.getheader(out, "MASK")["MASKB4"] == "COSMIC"
    assert not list(tmp_path.glob(".*tmp*"))


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "x.fits"
    with pytest.raises(RuntimeError), fitsio.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert not target.exists() and not list(tmp_path.iterdir())


def test_frame_stem():
    assert fitsio.frame_stem("a/b/ngc_R_001.fits.gz") == "ngc_R_001"
    assert fitsio.frame_stem("M51.fit") == "M51"
