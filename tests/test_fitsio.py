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
    """Products are named by the frame's path below raw_dir: subfolders keep them apart."""
    assert fitsio.frame_stem("a/b/ngc_R_001.fits.gz") == "a__b__ngc_R_001"
    assert fitsio.frame_stem("ngc_R_001.fits.gz") == "ngc_R_001"
    assert fitsio.frame_stem("M51.fit") == "M51"
    assert fitsio.frame_stem("n1/x.fits") != fitsio.frame_stem("n2/x.fits")


def _gz_with_bad_crc(tmp_path, data):
    """A full-length .fits.gz whose gzip CRC is wrong (one bit of the trailer flipped)."""
    import gzip

    plain = tmp_path / "plain.fits"
    fits.PrimaryHDU(data).writeto(plain)
    good = tmp_path / "good.fits.gz"
    with gzip.open(good, "wb") as g:
        g.write(plain.read_bytes())
    raw = bytearray(good.read_bytes())
    raw[-6] ^= 0x55            # inside the CRC32 of the 8-byte trailer
    bad = tmp_path / "bad.fits.gz"
    bad.write_bytes(bytes(raw))
    return good, bad


def test_bad_crc_is_found_whole_file(tmp_path):
    """astropy reads a .fits.gz with a wrong CRC without complaint; verify_file does not."""
    data = np.arange(64 * 64, dtype=np.int16).reshape(64, 64)
    good, bad = _gz_with_bad_crc(tmp_path, data)
    fitsio.verify_file(good)
    np.testing.assert_array_equal(fitsio.read_frame(bad)[0], data)   # astropy: no complaint
    with pytest.raises(FrameError, match=r"bad\.fits\.gz is damaged.*CRC"):
        fitsio.verify_file(bad)


def test_datasum_failure_is_an_unreadable_frame(tmp_path):
    data = np.arange(100 * 100, dtype=np.int16).reshape(100, 100)
    path = tmp_path / "ck.fits"
    fits.PrimaryHDU(data).writeto(path, checksum=True)
    raw = bytearray(path.read_bytes())
    raw[2880 + 500] ^= 0xFF                      # one byte of the pixels
    (tmp_path / "bad.fits").write_bytes(bytes(raw))
    assert fitsio.read_frame(path)[0].sum() == data.sum()
    with pytest.raises(FrameError, match="DATASUM"):
        fitsio.read_frame(tmp_path / "bad.fits")
