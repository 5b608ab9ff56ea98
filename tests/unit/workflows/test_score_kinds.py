"""``streamvae score`` for KPI points and image files: one verdict per point or image."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from streamvae.errors import DataError
from streamvae.types import ModelRef
from streamvae.workflows.score_kinds import score_images_file, score_points_file
from tests.factories import (
    KPI_INTERVAL_MS,
    KPI_SERIES,
    digit_split,
    kpi_values,
    make_image_bundle,
    make_kpi_bundle,
)

REF = ModelRef("m", "1")


@pytest.fixture(scope="module")
def kpi_bundle():
    return make_kpi_bundle(window_len=16, epochs=8)


def _points(spike_at: int) -> pl.DataFrame:
    frames = []
    for series, (level, amplitude) in KPI_SERIES.items():
        values = kpi_values(series, 1200, 120)
        if series == "cpu.web-1":
            values[spike_at] = level + 12 * amplitude
        ts = (np.arange(1200, 1320) * KPI_INTERVAL_MS).astype(np.int64)
        frames.append(pl.DataFrame({"series": series, "ts": ts, "value": values}))
    return pl.concat(frames).sort("ts", maintain_order=True)


def test_kpi_points_get_the_windows_verdict_with_their_series_threshold(kpi_bundle, tmp_path):
    frame = _points(spike_at=80)
    frame.write_csv(tmp_path / "points.csv")
    summary = score_points_file(kpi_bundle, REF, tmp_path / "points.csv", tmp_path / "out.csv")
    out = pl.read_csv(tmp_path / "out.csv")
    assert out.height == frame.height == summary.rows
    assert out.columns[:3] == ["series", "ts", "value"]
    ready = out.filter(pl.col("status") == "ready")
    waiting = out.filter(pl.col("status") != "ready")
    assert waiting.height == summary.invalid == 3 * 15, "a fresh store waits for 16 points"
    assert waiting["is_anomaly"].sum() == 0 and waiting["score"].is_null().all()
    segments = kpi_bundle.threshold.segments
    for series, threshold in ready.select("series", "threshold").iter_rows():
        assert threshold == pytest.approx(segments[series].value)
    at_spike = (pl.col("series") == "cpu.web-1") & (pl.col("ts") == 1280 * KPI_INTERVAL_MS)
    spike = out.filter(at_spike)
    assert spike["is_anomaly"].item() and spike["severity"].item() in ("warning", "critical")
    others = ready.filter(~at_spike)["score"]
    assert others.max() < spike["score"].item() / 5, "the spike stands far above the rest"
    assert summary.anomalies == int(out["is_anomaly"].sum()) < 0.05 * ready.height


def test_kpi_points_need_their_columns(kpi_bundle, tmp_path):
    pl.DataFrame({"series": ["a"], "value": [1.0]}).write_csv(tmp_path / "p.csv")
    with pytest.raises(DataError, match=r"missing \['ts'\]"):
        score_points_file(kpi_bundle, REF, tmp_path / "p.csv", tmp_path / "o.csv")


def test_images_get_one_verdict_each_and_keep_their_file_names(tmp_path):
    from PIL import Image

    bundle = make_image_bundle(size=16, epochs=4)
    _, held_out = digit_split(16)
    folder = tmp_path / "batch"
    folder.mkdir()
    odd = held_out[:40].copy()
    odd[-5:] = 1.0 - odd[-5:]  # inverted digits: unlike any training image
    for i, image in enumerate(odd):
        Image.fromarray((image[0] * 255).round().astype("uint8")).save(folder / f"{i:03d}.png")
    summary = score_images_file(bundle, REF, folder, tmp_path / "out.parquet", chunk_images=16)
    out = pl.read_parquet(tmp_path / "out.parquet")
    assert out["image"].to_list() == [f"{i:03d}.png" for i in range(40)]
    assert summary.rows == 40 and set(out["threshold"]) == {bundle.threshold.default.value}
    assert out["is_anomaly"][-5:].all(), "every inverted digit is flagged"
    assert summary.anomalies == int(out["is_anomaly"].sum()) <= 10
    np.savez(tmp_path / "wrong.npz", X=np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(DataError, match=r"images of shape \(1, 8, 8\)"):
        score_images_file(bundle, REF, tmp_path / "wrong.npz", tmp_path / "o.csv")
