"""Independent random streams of the generator, so that parameters change only what they must.

Each component draws from its own stream, derived from the instance seed and a component id
(and, for per-node and per-token draws, an index). Hence, for a fixed seed: adding nodes keeps
the existing nodes' distances and shadowing; adding tokens keeps the first tokens' gates;
changing the placement or the budgets leaves the channel and the gates unchanged. Expert and
router draws are also salted with the architecture's name (two presets with the same number of
experts get different experts), node draws are not (every preset sees the same network).
"""

from __future__ import annotations

import zlib

import numpy as np

_COMPONENTS = {
    "experts": 1,  # clusters and synthetic expert weights
    "node": 2,  # per-node distance, shadowing, compute, memory
    "routing-bias": 3,  # expert popularity in the router
    "routing-tokens": 4,  # per-token router logits
    "routing-calibration": 5,  # temperature calibration sample
    "placement": 6,  # random placements
}


def stream(seed: int, component: str, *index: int) -> np.random.Generator:
    """The generator of ``component`` (and optional indices) for instance ``seed``."""
    key = (_COMPONENTS[component], *index)
    return np.random.default_rng(np.random.SeedSequence(entropy=int(seed), spawn_key=key))


def model_salt(preset: str) -> int:
    """A stable integer from the preset name (CRC-32), to salt model-specific streams."""
    return zlib.crc32(preset.encode("utf-8"))
