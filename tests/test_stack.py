"""Resampling and combining: flux, variance and masks through known transforms."""

import numpy as np
import pytest

from redux_helpers import masks
from redux_helpers.demo import gauss_stamps
from redux_helpers.errors import ReduxError
from redux_helpers.register import Transform
from redux_helpers.stack import ResampledStore, combine_stack, resample


def _shift(dx, dy, scale=1.0):
    return Transform(np.eye(2) * scale, np.array([dx, dy]))


def test_identity_and_half_pixel_variance():
    data = np.random.default_rng(1).normal(10, 1, (40, 40))
    var = np.full((40, 40), 4.0)
    same = resample(data, var, None, Transform(), (40, 40))
    np.testing.assert_allclose(same.data[:-1, :-1], data[:-1, :-1], rtol=1e-6)
    half = resample(np.full((40, 40), 10.0), var, None, _shift(0.5, 0.0), (40, 40))
    inside = half.mask == 0
    np.testing.assert_allclose(half.data[inside], 10.0, rtol=1e-6)
    # two neighbours weighted 1/2 each: variance 4 * (1/4 + 1/4) = 2
    np.testing.assert_allclose(half.variance[inside], 2.0, rtol=1e-5)
    assert masks.has(half.mask[:, 0], "NODATA").all()


def test_flux_is_conserved_through_shift_and_scale():
    img = np.zeros((80, 80))
    gauss_stamps(img, [30.0], [35.0], [1000.0], 2.0)
    moved = resample(img, img * 0 + 1, None, _shift(6.3, -4.7), (80, 80))
    assert abs(np.nansum(moved.data) - 1000.0) < 1.0
    # a frame with pixels twice as large (scale 2): the same flux over 4x the pixels
    big = resample(img, img * 0 + 1, None, _shift(0.0, 0.0, scale=2.0), (160, 160))
    assert abs(np.nansum(big.data) - 1000.0) < 2.0


def test_masked_pixels_spread_to_the_neighbours_that_use_them():
    data = np.ones((20, 20))
    m = masks.flag(np.zeros((20, 20), np.uint16), np.eye(20, dtype=bool) & False, "BAD")
    m[10, 10] = masks.bit("COSMIC")
    out = resample(data, data, m, _shift(0.5, 0.5), (20, 20))
    # output (10.5, 10.5) -> frame (10, 10) .. (11, 11): four outputs lean on it
    hit = masks.has(out.mask, "COSMIC")
    assert hit.sum() == 4 and hit[10, 10] and hit[11, 11]


def _frames(n=5, value=100.0, var=25.0, shape=(30, 30)):
    rng = np.random.default_rng(4)
    out = []
    for _ in range(n):
        d = value + rng.normal(0, np.sqrt(var), shape)
        out.append(resample(d, np.full(shape, var), None, Transform(), shape, exptime=60.0))
    return out


def test_combination_rejects_an_outlier_and_propagates_uncertainty():
    frames = _frames()
    frames[2].data[5, 5] += 5000.0            # a cosmic ray that escaped its mask
    s = combine_stack(frames, sigma=5.0)
    assert s.rejected[5, 5] == 1 and abs(s.data[5, 5] - 100.0) < 10
    assert s.rejected.sum() == 1
    inner = (slice(0, 29), slice(0, 29))
    np.testing.assert_allclose(s.uncertainty[inner][s.coverage[inner] == 5], 5.0 / np.sqrt(5),
                               rtol=1e-5)
    assert np.all(s.exposure[inner][s.coverage[inner] == 5] == 300.0)
    # the scatter of the stack agrees with its uncertainty
    z = (s.data[inner] - 100.0) / s.uncertainty[inner]
    assert 0.85 < np.std(z) < 1.15


def test_frames_stored_on_disk_stack_exactly_as_in_memory(tmp_path):
    """A ResampledStore's frames give the same stack to the bit, and leave no file."""
    frames = _frames()
    frames[2].data[5, 5] += 5000.0
    frames[1].mask[7, 3] = masks.bit("BAD")
    in_memory = combine_stack(frames, sigma=5.0)
    with ResampledStore(tmp_path) as store:
        stored = [store.add(f"frame{i}", f) for i, f in enumerate(frames)]
        assert len(list(tmp_path.glob(".*.tmp-*.npy"))) == 3 * len(frames)
        on_disk = combine_stack(stored, sigma=5.0)
    assert not list(tmp_path.iterdir())
    for plane in ("data", "uncertainty", "coverage", "rejected", "exposure"):
        np.testing.assert_array_equal(getattr(on_disk, plane), getattr(in_memory, plane))
    assert on_disk.rejected[5, 5] == 1 and on_disk.coverage[7, 3] == len(frames) - 1


def test_nothing_covers_a_pixel():
    frames = _frames(n=3)
    for f in frames:
        f.mask[0, :] = masks.bit("NODATA")
    s = combine_stack(frames)
    assert np.all(np.isnan(s.data[0])) and np.all(masks.has(s.mask[0], "NODATA"))


def test_frames_of_two_filters_are_refused():
    frames = _frames(n=3)
    for f, name in zip(frames, ("R", "R", "Ha"), strict=True):
        f.filter = name
    with pytest.raises(ReduxError, match=r"2 filters \(Ha, R\) passed to one stack"):
        combine_stack(frames)
    frames[2].filter = "R"
    assert np.isfinite(combine_stack(frames).data).any()


def test_rejection_is_counted_frame_by_frame():
    rng = np.random.default_rng(4)
    shape = (60, 60)
    frames = []
    for k in range(4):
        data = rng.normal(0.0, 1.0, shape) + (12.0 if k == 2 else 0.0)   # frame 2: sky left
        data[5, 5 + k] += 200.0 if k == 0 else 0.0                         # one cosmic ray
        frames.append(resample(data, np.ones(shape), None, Transform(), shape))
    s = combine_stack(frames, sigma=5.0, snoise=0.0)
    pct = s.rejected_percent()
    # frame 2 is off by 12 sigma everywhere: (nearly) all of its values are rejected
    assert pct[2] > 95.0 and max(pct[0], pct[1], pct[3]) < 0.5
    assert s.rejected_per_frame[0] >= 1
    covered = int(s.coverage.sum() + s.rejected.sum())
    assert s.rejected_fraction == pytest.approx(s.rejected.sum() / covered)
    assert 0.23 < s.rejected_fraction < 0.26
