"""`parallel.each`: the frames' results in their order, errors as raised (its speed is
measured in benchmarks/bench_night.py, not here)."""

import time

import pytest

from redux_helpers import parallel


def test_results_come_back_in_order_whichever_finishes_first():
    done = []
    out = parallel.each(lambda i: (time.sleep(0.05 * (4 - i)), i * 10)[1], range(5),
                        workers=2, progress=done.append)
    assert out == [0, 10, 20, 30, 40] and done == [1] * 5


def test_the_first_error_in_order_is_raised_and_the_rest_not_started():
    started = []

    def work(i):
        started.append(i)
        if i == 1:
            raise ValueError("frame 1 is bad")
        time.sleep(0.05)
        return i

    with pytest.raises(ValueError, match="frame 1 is bad"):
        parallel.each(work, range(40), workers=2)
    assert len(started) < 40

