"""Seeded, named random streams.

Every consumer of randomness asks for a stream by name, e.g. ``np_rng(seed, "sampler", epoch)``.
Streams with different keys are statistically independent (NumPy ``SeedSequence`` spawn keys) and a
stream depends only on (seed, keys) — not on how many other streams were drawn before, and not on
Python's per-process salted ``hash()``: string keys are hashed with BLAKE2b.
"""

from __future__ import annotations

import hashlib

import numpy as np

StreamKey = int | str


def _key_to_int(key: StreamKey) -> int:
    """Maps a stream key to a non-negative int, stably across processes and machines."""
    if isinstance(key, (bool, np.bool_)):
        raise TypeError(f"stream key must be an int or str, got bool {key!r}")
    if isinstance(key, (int, np.integer)):
        if key < 0:
            raise ValueError(f"integer stream keys must be >= 0, got {key}")
        # Ints and strings live in disjoint halves of the key space, so 5 and "5" differ.
        return int(key) * 2
    if isinstance(key, str):
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "little") * 2 + 1
    raise TypeError(f"stream key must be an int or str, got {type(key).__name__} {key!r}")


def seed_sequence(seed: int, *stream: StreamKey) -> np.random.SeedSequence:
    """The SeedSequence for (seed, stream...): independent for distinct stream tuples."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return np.random.SeedSequence(int(seed), spawn_key=tuple(_key_to_int(k) for k in stream))


def np_rng(seed: int, *stream: StreamKey) -> np.random.Generator:
    """A NumPy Generator (PCG64) for the named stream."""
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, *stream)))


def stream_seed(seed: int, *stream: StreamKey) -> int:
    """A 63-bit integer seed derived from the named stream (for libraries that take an int)."""
    return int(seed_sequence(seed, *stream).generate_state(2, np.uint32).view(np.uint64)[0] >> np.uint64(1))


def jax_key(seed: int, *stream: StreamKey):
    """A jax PRNG key (new-style typed key) for the named stream."""
    import jax  # Local import: NumPy-only users of this module need not pay for jax.

    return jax.random.key(stream_seed(seed, *stream) & 0xFFFFFFFF_FFFFFFFF)
