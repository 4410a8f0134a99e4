import math

import numpy as np
import pytest

from dgcnet.plots import CURVE_SERIES, nice_ticks, training_curve


@pytest.mark.parametrize("low, high", [(0, 200), (0.31, 2.9), (1e-4, 0.02), (-3, 7), (5, 5), (0.8, 0.8001)])
def test_ticks_cover_the_range_in_round_equal_steps(low, high):
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high and len(ticks) >= 2
    steps = np.diff(ticks)
    assert np.allclose(steps, steps[0])
    mantissa = steps[0] / 10 ** math.floor(math.log10(steps[0]))
    assert any(math.isclose(mantissa, m) for m in (1, 2, 5, 10))
    assert len(ticks) <= 11


def _colour_pixels(image, colour):
    return int(np.all(np.asarray(image) == colour, axis=-1).sum())


def test_one_panel_per_series_present():
    loss_only = [{"iteration": i, "loss": 1 / i} for i in range(1, 30)]
    full = loss_only + [{"iteration": i, "lr": 0.01 * (1 - i / 30)} for i in range(1, 30)] + \
        [{"iteration": 10, "val_miou": 0.4}, {"iteration": 29, "val_miou": 0.8}]
    one, three = training_curve(loss_only), training_curve(full)
    assert one.width == three.width and three.height > 2.5 * one.height
    for key, _, colour in CURVE_SERIES:  # each series' line is drawn in its colour
        assert _colour_pixels(three, colour) > 20, key
    assert _colour_pixels(one, CURVE_SERIES[1][2]) == 0


def test_records_without_values_are_an_error():
    with pytest.raises(ValueError):
        training_curve([{"iteration": 1, "loss": None}])
