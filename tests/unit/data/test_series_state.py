"""Window state per KPI series: gaps, duplicates, out of order, warm-up, eviction, snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from streamvae.data.series_state import WindowSpec, WindowStore

MIN = 60_000
SPEC = WindowSpec(window_len=4, interval_ms=MIN, min_observed=0.5)


def feed(store: WindowStore, series: str, points: list[tuple[int, float]]):
    return [store.push(series, ts * MIN, value) for ts, value in points]


def test_warms_up_until_the_window_fills_then_is_ready():
    store = WindowStore(SPEC)
    pushes = feed(store, "a", [(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0), (4, 5.0)])
    assert [p.status for p in pushes] == ["warming_up"] * 3 + ["ready"] * 2
    assert pushes[3].values.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert pushes[4].values.tolist() == [2.0, 3.0, 4.0, 5.0]
    assert (pushes[4].start_ts, pushes[4].end_ts) == (1 * MIN, 4 * MIN)


def test_gap_is_masked_not_zero_filled_and_a_long_gap_restarts():
    store = WindowStore(SPEC)
    feed(store, "a", [(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0)])
    (after_gap,) = feed(store, "a", [(5, 6.0)])  # slot 4 missing
    assert after_gap.status == "ready"
    assert after_gap.values.tolist() == [3.0, 4.0, 0.0, 6.0]
    assert after_gap.mask.tolist() == [1.0, 1.0, 0.0, 1.0]
    (sparse,) = feed(store, "a", [(9, 9.0)])  # slots 6-8 missing: 1 of 4 observed
    assert sparse.status == "sparse" and sparse.values is None
    (restart,) = feed(store, "a", [(20, 1.0)])  # 12 slots > window: start again
    assert restart.status == "warming_up" and restart.restarted


def test_timestamps_snap_to_the_nearest_slot():
    store = WindowStore(SPEC)
    pushes = [store.push("a", t, float(i)) for i, t in enumerate([0, 61_000, 119_000, 181_000])]
    assert pushes[-1].status == "ready" and pushes[-1].mask.tolist() == [1.0] * 4


def test_duplicates_and_out_of_order_points_leave_the_state_unchanged():
    store = WindowStore(SPEC)
    feed(store, "a", [(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0)])
    before = store.snapshot("a")
    assert feed(store, "a", [(3, 99.0)])[0].status == "duplicate"
    assert feed(store, "a", [(1, 99.0)])[0].status == "out_of_order"
    assert store.snapshot("a") == before


def test_series_are_independent():
    store = WindowStore(SPEC)
    feed(store, "a", [(0, 1.0), (1, 2.0), (2, 3.0)])
    assert feed(store, "b", [(3, 1.0)])[0].status == "warming_up"
    assert feed(store, "a", [(3, 4.0)])[0].status == "ready"


def test_capacity_evicts_the_least_recently_updated_and_memory_is_reported():
    store = WindowStore(SPEC, max_series=2)
    store.push("a", 0, 1.0)
    store.push("b", 0, 1.0)
    store.push("a", MIN, 1.0)
    store.push("c", 0, 1.0)
    assert store.names() == ["a", "c"] and store.evicted_capacity == 1
    assert store.memory_bytes == 2 * (2 * 8 * 4 + 400)


def test_idle_series_are_evicted_after_the_ttl():
    store = WindowStore(SPEC)
    store.push("old", 0, 1.0, seen_ms=1_000)
    store.push("new", 0, 1.0, seen_ms=50_000)
    assert store.evict_idle(now_ms=61_000, ttl_ms=30_000) == 1
    assert store.names() == ["new"] and store.evicted_idle == 1


def test_snapshot_restore_continues_exactly_as_without_a_restart():
    rng = np.random.default_rng(0)
    points = [(t, float(v)) for t, v in zip(range(40), rng.normal(size=40), strict=True) if t % 7]
    straight = WindowStore(SPEC)
    expected = feed(straight, "a", points)
    first = WindowStore(SPEC)
    feed(first, "a", points[:15])
    resumed = WindowStore(SPEC)
    resumed.restore("a", first.snapshot("a"))
    got = feed(resumed, "a", points[15:])
    for want, have in zip(expected[15:], got, strict=True):
        assert want.status == have.status
        if want.values is not None:
            np.testing.assert_array_equal(want.values, have.values)
            np.testing.assert_array_equal(want.mask, have.mask)


def test_restore_rejects_a_snapshot_of_another_window():
    store = WindowStore(SPEC)
    with pytest.raises(ValueError, match="does not fit"):
        store.restore("a", {"last_ts": 0, "filled": 4, "values": [1.0] * 3, "mask": [1] * 3})


def test_invalid_specs_are_rejected():
    with pytest.raises(ValueError, match="window spec"):
        WindowSpec(window_len=1, interval_ms=MIN)
    with pytest.raises(ValueError, match="min_observed"):
        WindowSpec(window_len=4, interval_ms=MIN, min_observed=0.0)
