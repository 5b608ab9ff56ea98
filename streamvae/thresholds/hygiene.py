"""Alert hygiene: which over-threshold scores become alerts.

Two rules, per key (a feature vector's ``key``, a KPI series):

* **m-of-n confirmation**: a flagged score alerts only when at least ``confirm_m`` of the key's
  last ``confirm_n`` scores (this one included) were flagged. 1-of-1 (the default) alerts on
  every flagged score; 3-of-5 waits for a pattern and ignores a lone spike.
* **cooldown**: after an alert for a key, further alerts for it within ``cooldown_ms`` of
  *event time* are suppressed, unless they are more severe than the last one emitted (an
  escalation always gets through and restarts the cooldown). The next emitted alert reports
  how many were suppressed before it.

Event time (the record's ``ts``) rather than wall-clock time keeps the decisions a function of
the stream: replaying the same records gives the same alerts. Keys are bounded in number (least
recently seen dropped first) and in length (``bounded_key``), so a stream of ever-new or huge
keys cannot grow memory without bound. Pure Python, no I/O; the state of one key can be
snapshotted and restored (KPI state topic).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

MAX_KEY_CHARS = 256
"""Longest key the gate (and an output record's ``key`` / ``id``) holds verbatim."""

Verdict = Literal["alert", "cooldown", "unconfirmed"]
SEVERITY_RANK = {"": 0, "normal": 0, "warning": 1, "critical": 2}


def bounded_key(text: str, limit: int = MAX_KEY_CHARS) -> str:
    """``text``, or when longer than ``limit``, its head and a digest of the whole.

    Keeps distinct long keys distinct (a 128-bit BLAKE2b digest) while bounding the memory
    a key can hold and the size of the records that carry it.

    >>> bounded_key("card-42")
    'card-42'
    >>> len(bounded_key("x" * 10_000))
    256
    """
    if len(text) <= limit:
        return text
    digest = hashlib.blake2b(text.encode(errors="surrogatepass"), digest_size=16).hexdigest()
    return f"{text[: max(limit - len(digest) - 1, 0)]}#{digest}"[-limit:]


@dataclass(frozen=True, slots=True)
class HygienePolicy:
    """The rules; the defaults change nothing (every flagged score alerts)."""

    cooldown_ms: int = 0
    confirm_m: int = 1
    confirm_n: int = 1
    max_keys: int = 100_000

    def __post_init__(self) -> None:
        if self.cooldown_ms < 0 or self.max_keys < 1:
            msg = f"cooldown_ms must be >= 0 and max_keys >= 1, got {self}"
            raise ValueError(msg)
        if not 1 <= self.confirm_m <= self.confirm_n <= 64:
            msg = (
                f"need 1 <= confirm_m <= confirm_n <= 64, got {self.confirm_m}-of-{self.confirm_n}"
            )
            raise ValueError(msg)

    @property
    def active(self) -> bool:
        """Whether any rule can suppress an alert."""
        return self.cooldown_ms > 0 or self.confirm_m > 1

    @property
    def needs_history(self) -> bool:
        """Whether every score (not only flagged ones) must be shown to the gate."""
        return self.confirm_n > 1


@dataclass(slots=True)
class _KeyState:
    flags: int = 0  # bit i: the score i steps back was flagged (bit 0: the newest)
    last_alert_ts: int | None = None
    last_severity: int = 0
    suppressed: int = 0


@dataclass(slots=True)
class Admitted:
    """The gate's verdict on one flagged score; ``suppressed_before`` for emitted alerts."""

    verdict: Verdict
    suppressed_before: int = 0


@dataclass
class AlertGate:
    """Applies a ``HygienePolicy`` to a stream of scores, key by key."""

    policy: HygienePolicy
    _keys: OrderedDict[str, _KeyState] = field(default_factory=OrderedDict)

    def observe(self, key: str | None, ts: int, severity: str) -> Admitted | None:
        """Show one score to the gate (``severity`` "" when under the threshold).

        Returns ``None`` for a score under the threshold, else the verdict. A record without
        a key is never suppressed.
        """
        flagged = bool(severity) and severity != "normal"
        if key is None or not self.policy.active:
            return Admitted("alert") if flagged else None
        state = self._state(key)
        n = self.policy.confirm_n
        state.flags = ((state.flags << 1) | int(flagged)) & ((1 << n) - 1)
        if not flagged:
            return None
        if state.flags.bit_count() < self.policy.confirm_m:
            state.suppressed += 1
            return Admitted("unconfirmed")
        rank = SEVERITY_RANK.get(severity, 1)
        cooling = (
            state.last_alert_ts is not None
            and self.policy.cooldown_ms > 0
            and ts - state.last_alert_ts < self.policy.cooldown_ms
            and rank <= state.last_severity
        )
        if cooling:
            state.suppressed += 1
            return Admitted("cooldown")
        before, state.suppressed = state.suppressed, 0
        state.last_alert_ts, state.last_severity = ts, rank
        return Admitted("alert", before)

    def _state(self, key: str) -> _KeyState:
        key = bounded_key(key)
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState()
            if len(self._keys) > self.policy.max_keys:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key)
        return state

    def __len__(self) -> int:
        return len(self._keys)

    def snapshot(self, key: str) -> dict[str, Any] | None:
        """The key's state as plain values (``None`` when the gate holds nothing for it)."""
        state = self._keys.get(bounded_key(key))
        if state is None:
            return None
        return {
            "flags": state.flags, "last_alert_ts": state.last_alert_ts,
            "last_severity": state.last_severity, "suppressed": state.suppressed,
        }  # fmt: skip

    def restore(self, key: str, values: dict[str, Any]) -> None:
        """Inverse of ``snapshot``.

        Raises:
            ValueError: malformed values.
        """
        try:
            last = values["last_alert_ts"]
            state = _KeyState(
                flags=int(values["flags"]),
                last_alert_ts=None if last is None else int(last),
                last_severity=int(values["last_severity"]),
                suppressed=int(values["suppressed"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"malformed alert-gate state for {key!r}: {exc}"
            raise ValueError(msg) from exc
        self._state(key)  # position in the LRU order
        self._keys[bounded_key(key)] = state

    def drop(self, key: str) -> None:
        """Forget a key (its series moved to another consumer)."""
        self._keys.pop(bounded_key(key), None)
