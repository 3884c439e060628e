"""Streamed robust combination: known answers, the demo's bias, bad input, streaming."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import sigma_clip

from redux_helpers import combine
from redux_helpers.calibrate import FrameReader
from redux_helpers.combine import clip_and_combine, combine_readers
from redux_helpers.errors import FrameError


def test_clip_rejects_outliers_like_astropy():
    rng = np.random.default_rng(3)
    a = rng.normal(100.0, 2.0, (5000, 11)).astype(np.float32)
    a[::5, 2] += 80.0                     # a cosmic ray in one frame of every fifth pixel
    c, err, n = clip_and_combine(a.copy(), method="mean", sigma=3.0, maxiters=1)
    ref = sigma_clip(a, sigma=3.0, maxiters=1, cenfunc="median", stdfunc="mad_std", axis=1)
    np.testing.assert_allclose(c, ref.mean(axis=1).filled(np.nan), rtol=1e-5)
    assert np.all(n[::5] <= 10)           # every outlier rejected
    assert abs(np.mean(c) - 100.0) < 0.02
    # the standard error follows sigma / sqrt(n)
    assert abs(np.median(err) - 2.0 / np.sqrt(11)) < 0.1


def test_median_with_nan_and_all_rejected():
    a = np.array([[1, 2, 3, np.nan], [np.nan] * 4], dtype=np.float32)
    c, _, n = clip_and_combine(a, method="median")
    assert c[0] == 2.0 and n[0] == 3 and np.isnan(c[1]) and n[1] == 0


def test_superbias_matches_truth(small_demo):
    root, truth = small_demo
    files = sorted((root / "raw").glob("bias_*.fits"))
    res = combine_readers([FrameReader(f) for f in files], method="median", sigma=3.0)
    rn_adu = truth["read_noise"] / truth["gain"]
    rms = np.std(res.data - truth.image("bias_pattern"))
    assert rms < 1.5 * rn_adu / np.sqrt(len(files))
    # a superbias that forgot the overscan would be ~1000 ADU off
    assert abs(np.mean(res.data - truth.image("bias_pattern"))) < 0.2


def test_fewer_than_three_frames(small_demo):
    root, _ = small_demo
    files = sorted((root / "raw").glob("bias_*.fits"))[:2]
    with pytest.raises(FrameError, match=r"need at least 3 frames to combine, got 2.*redux run TARGET -p min_frames=2\)"):
        combine_readers([FrameReader(f) for f in files])


def test_two_binnings_are_refused_with_the_files_named(tmp_path):
    for i in range(3):
        fits.PrimaryHDU(np.zeros((20, 20), np.float32)).writeto(tmp_path / f"b1_{i}.fits")
    fits.PrimaryHDU(np.zeros((10, 10), np.float32),
                    header=fits.Header({"XBINNING": 2})).writeto(tmp_path / "b2.fits")
    readers = [FrameReader(p) for p in sorted(tmp_path.glob("*.fits"))]
    with pytest.raises(FrameError, match=r"different sizes.*b2\.fits.*binning"):
        combine_readers(readers)


def test_combine_streams_each_file_once(small_demo, monkeypatch):
    """Bands are read once per file and memory per band stays under the budget."""
    root, _ = small_demo
    files = sorted((root / "raw").glob("bias_*.fits"))
    readers = [FrameReader(f) for f in files]
    reads = []
    for r in readers:
        orig = r.raw_band
        monkeypatch.setattr(r, "raw_band", lambda y0, y1, o=orig: reads.append(y1 - y0) or o(y0, y1))
    combine_readers(readers, mem_mb=1.0)
    n_rows = readers[0].shape[0]
    assert sum(reads) == n_rows * len(files)            # every row of every file read once
    assert max(reads) == combine.band_rows(len(files), readers[0].shape[1], mem_mb=1.0)
    assert max(reads) < n_rows                           # and in more than one band
