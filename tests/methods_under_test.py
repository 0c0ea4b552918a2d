"""The one list of exact backends the tests run over (method, formulation, interface).

``tests/test_registry.py`` checks that it covers :mod:`siftopt.registry` exactly, so a new
backend cannot be registered without every backend test running it.
"""

from __future__ import annotations

EXACT_BACKENDS: tuple[tuple[str, str, str], ...] = (
    ("highs", "patterns", "direct"),
    ("highs", "patterns", "pyomo"),
    ("highs", "slots", "pyomo"),
    ("highs", "slots", "direct"),
    ("cpsat", "patterns", "auto"),
    ("cpsat", "slots", "auto"),
    ("cpsat", "lagrange", "auto"),
    ("brute", "auto", "auto"),
)

#: The backends that are checked against brute force (every one but brute itself).
SEARCH_BACKENDS = tuple(b for b in EXACT_BACKENDS if b[0] != "brute")


def backend_id(backend: tuple[str, str, str]) -> str:
    return "/".join(part for part in backend if part != "auto")
