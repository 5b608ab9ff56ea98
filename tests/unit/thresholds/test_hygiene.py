"""Alert hygiene: m-of-n confirmation, cooldown by event time, escalation, bounded keys."""

from __future__ import annotations

import pytest

from streamvae.thresholds import AlertGate, HygienePolicy, bounded_key
from streamvae.thresholds.hygiene import MAX_KEY_CHARS


def verdicts(gate: AlertGate, key: str | None, events: list[tuple[int, str]]) -> list[str | None]:
    out = []
    for ts, severity in events:
        admitted = gate.observe(key, ts, severity)
        out.append(None if admitted is None else admitted.verdict)
    return out


def test_the_default_policy_lets_every_flagged_score_alert():
    gate = AlertGate(HygienePolicy())
    events = [(0, "warning"), (1, ""), (2, "critical"), (3, "warning")]
    assert verdicts(gate, "k", events) == ["alert", None, "alert", "alert"]
    assert len(gate) == 0, "an inactive gate keeps no state"


def test_cooldown_holds_back_repeats_within_the_window_of_event_time():
    gate = AlertGate(HygienePolicy(cooldown_ms=1_000))
    events = [(0, "warning"), (400, "warning"), (999, "warning"), (1_000, "warning")]
    assert verdicts(gate, "k", events) == ["alert", "cooldown", "cooldown", "alert"]
    assert verdicts(gate, "other", [(500, "warning")]) == ["alert"], "keys are independent"


def test_the_next_alert_counts_what_was_suppressed_before_it():
    gate = AlertGate(HygienePolicy(cooldown_ms=100))
    gate.observe("k", 0, "warning")
    gate.observe("k", 10, "warning")
    gate.observe("k", 20, "warning")
    admitted = gate.observe("k", 150, "warning")
    assert admitted is not None and admitted.verdict == "alert"
    assert admitted.suppressed_before == 2
    assert gate.observe("k", 300, "warning").suppressed_before == 0


def test_an_escalation_gets_through_a_cooldown_and_restarts_it():
    gate = AlertGate(HygienePolicy(cooldown_ms=1_000))
    events = [(0, "warning"), (100, "critical"), (200, "critical"), (300, "warning")]
    assert verdicts(gate, "k", events) == ["alert", "alert", "cooldown", "cooldown"]


def test_m_of_n_waits_for_confirmation_and_ignores_a_lone_spike():
    gate = AlertGate(HygienePolicy(confirm_m=3, confirm_n=5))
    lone = [(0, "warning"), (1, ""), (2, ""), (3, ""), (4, ""), (5, "")]
    assert verdicts(gate, "s", lone) == ["unconfirmed", None, None, None, None, None]
    burst = [(6, "warning"), (7, ""), (8, "warning"), (9, "warning"), (10, "critical")]
    assert verdicts(gate, "s", burst) == ["unconfirmed", None, "unconfirmed", "alert", "alert"]


def test_m_of_n_forgets_flags_older_than_n_scores():
    gate = AlertGate(HygienePolicy(confirm_m=2, confirm_n=3))
    events = [(0, "warning"), (1, ""), (2, ""), (3, "warning")]
    assert verdicts(gate, "s", events) == ["unconfirmed", None, None, "unconfirmed"]


def test_records_without_a_key_are_never_suppressed():
    gate = AlertGate(HygienePolicy(cooldown_ms=10_000))
    assert verdicts(gate, None, [(0, "warning"), (1, "warning")]) == ["alert", "alert"]


def test_keys_are_bounded_least_recently_seen_first():
    gate = AlertGate(HygienePolicy(cooldown_ms=1_000, max_keys=2))
    for key in ("a", "b", "c"):
        gate.observe(key, 0, "warning")
    assert len(gate) == 2 and gate.snapshot("a") is None
    assert verdicts(gate, "a", [(10, "warning")]) == ["alert"], "a forgotten key fails open"


def test_snapshot_and_restore_carry_a_key_across_consumers():
    policy = HygienePolicy(cooldown_ms=1_000, confirm_m=2, confirm_n=3)
    first, second = AlertGate(policy), AlertGate(policy)
    events = [(0, "warning"), (100, "warning"), (200, "warning")]
    straight = verdicts(AlertGate(policy), "s", [*events, (1200, "warning")])
    verdicts(first, "s", events)
    state = first.snapshot("s")
    assert state is not None
    second.restore("s", state)
    assert verdicts(second, "s", [(1_200, "warning")]) == straight[-1:]
    with pytest.raises(ValueError, match="malformed"):
        second.restore("s", {"flags": 1})


@pytest.mark.parametrize(
    "values", [{"confirm_m": 3, "confirm_n": 2}, {"confirm_m": 0}, {"cooldown_ms": -1}]
)
def test_bad_policies_are_refused(values):
    with pytest.raises(ValueError):
        HygienePolicy(**values)


def test_keys_are_bounded_in_length_and_long_keys_stay_distinct():
    gate = AlertGate(HygienePolicy(cooldown_ms=1_000))
    long_a, long_b = "a" * 100_000, "a" * 99_999 + "b"
    assert verdicts(gate, long_a, [(0, "warning"), (1, "warning")]) == ["alert", "cooldown"]
    assert verdicts(gate, long_b, [(2, "warning")]) == ["alert"], "same head, other key"
    assert all(len(k) <= MAX_KEY_CHARS for k in gate._keys)
    assert gate.snapshot(long_a) is not None
    gate.drop(long_a)
    assert gate.snapshot(long_a) is None


def test_bounded_key_keeps_short_keys_and_shortens_long_ones():
    assert bounded_key("card-42") == "card-42"
    shortened = bounded_key("é" * 1_000)
    assert len(shortened) == MAX_KEY_CHARS and shortened.startswith("éé")
    assert bounded_key("é" * 1_000) == shortened  # deterministic
