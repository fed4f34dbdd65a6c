"""Retry delays: exponential with jitter and a cap (GitLab: n^4 + 15 + rand(30)*(n+1) s)."""

from __future__ import annotations

import random
from datetime import timedelta


def retry_delay(retry_count: int, *, cap_seconds: float, rng: random.Random | None = None
                ) -> timedelta:
    """How long to wait before retry number ``retry_count`` (1 for the first retry)."""
    n = max(retry_count, 1)
    jitter = (rng or random).uniform(0, 30) * (n + 1) / 10
    return timedelta(seconds=min(float(n**4) + 5 + jitter, cap_seconds))
