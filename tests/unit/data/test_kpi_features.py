"""Pure KPI helpers: interval, calendar features, the series scaler, NAB files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamvae.data.kpi_features import (
    SeriesScaler,
    calendar_features,
)
from streamvae.data.nab import load_nab
from streamvae.errors import DataError


def test_calendar_features_follow_hour_and_weekday():
    monday_noon = np.array([(4 * 24 + 12) * 3_600_000], np.int64)  # 1970-01-05 12:00
    hour_sin, hour_cos, day_sin, day_cos = calendar_features(monday_noon)[0]
    assert hour_sin == pytest.approx(0.0, abs=1e-6) and hour_cos == pytest.approx(-1.0)
    assert day_sin == pytest.approx(0.0, abs=1e-6) and day_cos == pytest.approx(1.0)


def test_series_scaler_is_robust_and_handles_flat_series():
    values = np.concatenate([np.random.default_rng(0).normal(10.0, 2.0, 5000), [1e6]])
    scaler = SeriesScaler.fit(values)
    assert scaler.center == pytest.approx(10.0, abs=0.1)
    assert scaler.scale == pytest.approx(2.0, rel=0.05)  # the outlier does not inflate it
    assert SeriesScaler.fit(np.full(10, 3.0)).scale == 1.0
    assert SeriesScaler.from_dict(scaler.to_dict()) == scaler


def write_nab(root, layout: str):
    data = root / "data" if layout == "nab" else root
    (data / "cat").mkdir(parents=True)
    rows = ["timestamp,value"] + [f"2014-01-01 00:{m:02d}:00,{m}" for m in range(0, 60, 5)]
    rows.insert(5, "2013-12-31 23:00:00,99")  # a point out of order, as in real NAB files
    (data / "cat" / "a.csv").write_text("\n".join(rows) + "\n")
    labels = {"cat/a.csv": [["2014-01-01 00:20:00.000000", "2014-01-01 00:30:00.000000"]]}
    target = root / "labels" / "combined_windows.json" if layout == "nab" else root / "windows.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(labels))


@pytest.mark.parametrize("layout", ["nab", "flat"])
def test_load_nab_reads_both_layouts_and_keeps_file_order(tmp_path, layout):
    write_nab(tmp_path, layout)
    (file,) = load_nab(tmp_path)
    assert file.name == "cat/a.csv" and len(file) == 13
    assert file.values[4] == 99.0  # kept where it was streamed
    assert file.windows == ((5, 7),)  # rows 00:20 .. 00:30 (after the inserted row)
    assert file.labels().sum() == 3


def test_load_nab_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="not a NAB directory"):
        load_nab(tmp_path)
    write_nab(tmp_path, "flat")
    with pytest.raises(DataError, match="not in windows.json"):
        load_nab(tmp_path, names=["cat/b.csv"])
