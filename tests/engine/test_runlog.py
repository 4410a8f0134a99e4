"""The numbers of a log line: seconds per iteration, data-wait share, ETA."""
import pytest

import dgcnet.engine.runlog as runlog
from dgcnet.engine.runlog import StepMeter, format_duration, log_line


def test_durations_read_as_hours_minutes_seconds():
    assert [format_duration(s) for s in (0, 59.6, 3725, 90061)] == ["0:00:00", "0:01:00", "1:02:05", "25:01:01"]


def test_step_meter_times_intervals_and_estimates_from_recent_pace(monkeypatch):
    clock = iter([100.0, 110.0, 150.0, 160.0, 161.0])
    monkeypatch.setattr(runlog.time, "perf_counter", lambda: next(clock))
    meter = StepMeter(start=0, total=100, window=1)          # t=100
    meter.add_wait(2.5)
    first = meter.interval(10)                                  # t=110: 10 steps in 10 s
    assert first == pytest.approx({"seconds_per_iter": 1.0, "data_wait": 0.25, "eta_seconds": 90.0})
    second = meter.interval(20)                                 # t=150: slower, 4 s a step
    assert second["seconds_per_iter"] == pytest.approx(4.0) and second["data_wait"] == 0
    assert second["eta_seconds"] == pytest.approx(80 * 4.0)   # window 1: the last interval's pace only
    meter.exclude_since(155.0)                                  # t=160: 5 s of validation left out
    assert meter.interval(21)["seconds_per_iter"] == pytest.approx(161.0 - 150.0 - 5.0)


def test_log_line_keeps_the_port_prefix_and_names_each_field():
    record = {"iteration": 10, "loss": 1.5, "lr": 0.01, "loss_main": 1.1, "loss_aux": 1.0, "seconds_per_iter": 0.4123,
              "data_wait": 0.034, "eta_seconds": 3725, "peak_memory_gb": 10.2}
    assert log_line(record, 60000) == ("iter = 10 of 60000 completed, loss = 1.500000, lr=0.01, loss_main=1.100000, "
                                       "loss_aux=1.000000, s/iter=0.412, data_wait=3%, eta=1:02:05, peak_mem=10.20GB")
    skipped = {**record, "loss": None, "loss_main": None, "loss_aux": None, "peak_memory_gb": None}
    assert log_line(skipped, 60000) == ("iter = 10 of 60000 completed, loss = nan (all skipped), lr=0.01, "
                                        "s/iter=0.412, data_wait=3%, eta=1:02:05")
