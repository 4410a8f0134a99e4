import json
import math

import numpy as np
import pytest

from PIL import Image

from dgcnet.cli import main
from dgcnet.plots import CURVE_SERIES, RUN_COLOURS, nice_ticks, run_curves, smooth, training_curve


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


def _run_folder(root, name, slope, lines=30):
    folder = root / name
    folder.mkdir()
    records = [{"iteration": i, "loss": 3.0 - slope * i + 0.3 * (-1) ** i, "lr": 0.01 * (1 - i / lines) ** 0.9}
               for i in range(1, lines + 1)]
    records += [{"iteration": i, "val_miou": 0.02 * i * slope * 10, "best_miou": 0.1} for i in (10, 20, 30)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_smoothing_follows_tensorboard_and_keeps_the_first_value():
    assert smooth([1.0, 1.0, 1.0], 0.6) == pytest.approx([1.0, 1.0, 1.0])
    assert smooth([0.0, 10.0], 0.5) == pytest.approx([0.0, 10 * 0.5 / 0.75])
    assert smooth([3.0, 5.0], 0.0) == [3.0, 5.0]


def test_run_curves_one_panel_per_key_one_colour_per_run():
    runs = {name: [{"iteration": i, "loss": s / i, "lr": 0.01} for i in range(1, 40)]
            for name, s in (("a", 1.0), ("b", 2.0))}
    one, two = run_curves(runs, ["loss"]), run_curves(runs, ["loss", "lr"])
    assert two.height - one.height == 280
    for colour in RUN_COLOURS[:2]:  # both runs' smoothed lines and legend swatches
        assert _colour_pixels(one, colour) > 50
    assert _colour_pixels(one, RUN_COLOURS[2]) == 0
    with pytest.raises(ValueError, match="no run has values of 'val_miou'"):
        run_curves(runs, ["val_miou"])


def test_plot_command_draws_several_runs_and_never_overwrites(tmp_path, capsys):
    a, b = _run_folder(tmp_path, "lr0.01", 0.05), _run_folder(tmp_path, "lr0.05", 0.08)
    out = tmp_path / "curves.png"
    assert main(["plot", str(a), str(b / "metrics.jsonl"), "--keys", "loss,val_miou,lr", "--out", str(out)]) == 0
    assert "loss, val_miou, lr of 2 run(s)" in capsys.readouterr().out
    image = Image.open(out)
    assert image.format == "PNG" and image.height > 3 * 280
    before = out.read_bytes()
    assert main(["plot", str(a), "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["plot", str(a), "--keys", "loss,nothing", "--out", str(tmp_path / "x.png")]) == 1
    assert "no run has nothing; keys found: best_miou, loss, lr, val_miou" in capsys.readouterr().err
    lines = (a / "metrics.jsonl").read_text().splitlines()
    (a / "metrics.jsonl").write_text("\n".join(lines[:3] + ["{oops"] + lines[3:] + ['{"iteration": 4'] ) + "\n")
    assert main(["plot", str(a), "--out", str(tmp_path / "y.png")]) == 1
    err = capsys.readouterr().err
    assert f"{a / 'metrics.jsonl'}:4: not a JSON record" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()
