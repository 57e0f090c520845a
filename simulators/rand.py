"""Seeded, order-independent randomness: a value is a pure function of the seed and its keys."""

from __future__ import annotations

import hashlib
from functools import lru_cache


@lru_cache(maxsize=8192)  # the same keys come back every step (an appliance's noise for this minute)
def unit(seed: int, *keys: object) -> float:
    """A number in [0, 1) fixed by the seed and the keys (no hidden generator state)."""
    digest = hashlib.blake2b(repr((seed, *keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def between(seed: int, low: float, high: float, *keys: object) -> float:
    """A number in [low, high) fixed by the seed and the keys."""
    return low + (high - low) * unit(seed, *keys)
