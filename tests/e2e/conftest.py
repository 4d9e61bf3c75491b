"""Fixtures of the end-to-end tests (test_rl.py has a `captured` of its own, which also records the
ratios' values; in that module it overrides this one)."""

from __future__ import annotations

import pytest


@pytest.fixture
def captured(monkeypatch):
    """The Experience of every step, and the level of every importance ratio the policy loss made."""
    from alignkit.algos.losses import policy
    from alignkit.trainers.rl.online_rl import OnlineRL

    seen = {"exp": [], "ratio": []}
    make = OnlineRL.make_experience
    monkeypatch.setattr(OnlineRL, "make_experience", lambda self, *a: seen["exp"].append(make(self, *a)) or seen["exp"][-1])
    for level, fn in list(policy.RATIOS.items()):
        monkeypatch.setitem(policy.RATIOS, level, lambda *a, fn=fn, level=level: seen["ratio"].append(level) or fn(*a))
    return seen
