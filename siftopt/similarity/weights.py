"""The expert-weight contract: which arrays describe the experts of one MoE layer.

Expert weights (``.npz``, :func:`load_expert_weights`): ``w1`` (N, h, d), ``w2`` (N, d, h),
optional ``w3`` (N, h, d) for gated experts, optional biases ``b1`` (N, h) and ``b2`` (N, d).
With d the model (token-state) dimension and h the expert's hidden dimension:

* plain kinds ``relu``, ``gelu``, ``silu``: ``E(x) = w2 σ(w1 x + b1) + b2``;
* gated kind ``swiglu``: ``E(x) = w2 (silu(w1 x + b1) ⊙ (w3 x)) + b2`` (Mixtral naming: w1 gate,
  w3 up, w2 down).

docs/bounds.md §1 is the contract in prose; :mod:`siftopt.similarity.experts` evaluates it.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from siftopt.errors import InputError, UsageError
from siftopt.io.reader import check_npz_memory

KINDS: tuple[str, ...] = ("relu", "gelu", "silu", "swiglu")
GATED_KINDS: frozenset[str] = frozenset({"swiglu"})
WEIGHT_KEYS: tuple[str, ...] = ("w1", "w2", "w3", "b1", "b2")
#: Largest magnitude of a weight or bias entry (norms and bounds then stay finite doubles).
MAX_WEIGHT = 1e6


@dataclass(frozen=True, eq=False)
class ExpertWeights:
    """Validated weights of the N experts of one MoE layer (arrays are not copied; never modified).

    Shapes: ``w1`` (N, h, d), ``w2`` (N, d, h), ``w3`` (N, h, d) or None, ``b1`` (N, h) or None,
    ``b2`` (N, d) or None; d is the token-state dimension, h the expert hidden dimension.
    ``source`` names the file (or ``<arrays>``) in error messages.
    """

    w1: np.ndarray
    w2: np.ndarray
    w3: np.ndarray | None = None
    b1: np.ndarray | None = None
    b2: np.ndarray | None = None
    source: str = "<arrays>"

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any], *, source: str = "<arrays>") -> ExpertWeights:
        """Validate a mapping of the contract's arrays (same checks as the file loader)."""
        return _validate_arrays(arrays, source)

    @property
    def num_experts(self) -> int:
        return int(self.w1.shape[0])

    @property
    def ffn_dim(self) -> int:
        """h, the hidden dimension of each expert."""
        return int(self.w1.shape[1])

    @property
    def model_dim(self) -> int:
        """d, the token-state dimension."""
        return int(self.w1.shape[2])

    @property
    def gated(self) -> bool:
        return self.w3 is not None

    @property
    def has_b1(self) -> bool:
        return self.b1 is not None and bool(np.any(self.b1 != 0))

    @property
    def has_b2(self) -> bool:
        return self.b2 is not None and bool(np.any(self.b2 != 0))


def load_expert_weights(path: str) -> ExpertWeights:
    """Read and validate an expert-weight ``.npz`` file (see the module docstring).

    Raises :class:`InputError` with a one-line message naming the file and the array for a
    missing or unreadable file, missing or unknown arrays, wrong dtypes or shapes, NaN or inf.
    """
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError("no such file", file=path) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a .npz file", file=path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=path) from None
    except (ValueError, EOFError, zipfile.BadZipFile):
        raise InputError("not a NumPy .npz archive", file=path) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InputError("is a single .npy array, expected a .npz archive with arrays "
                         "w1, w2 (and optionally w3, b1, b2)", file=path)
    check_npz_memory(path)  # the declared shapes, before any array is read
    arrays: dict[str, Any] = {}
    with archive:
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, MemoryError) as exc:
                reason = "object arrays are not allowed" if "pickle" in str(exc) else str(exc)
                raise InputError(f"cannot read array: {reason}", file=path, path=key) from None
    return _validate_arrays(arrays, path)


def _validate_arrays(arrays: Mapping[str, Any], source: str) -> ExpertWeights:
    unknown = sorted(k for k in arrays if k not in WEIGHT_KEYS)
    if unknown:
        raise InputError(f"unknown array (allowed: {', '.join(WEIGHT_KEYS)})",
                         file=source, path=unknown[0])
    for key in ("w1", "w2"):
        if key not in arrays:
            raise InputError("missing (required: w1 (N, h, d) and w2 (N, d, h))",
                             file=source, path=key)
    checked = {k: _as_real_array(arrays[k], source, k) for k in WEIGHT_KEYS if k in arrays}
    w1 = checked["w1"]
    if w1.ndim != 3 or 0 in w1.shape:
        raise InputError(f"must have shape (N, h, d) with N, h, d >= 1, got {w1.shape}",
                         file=source, path="w1")
    n, h, d = w1.shape
    expected = {"w2": (n, d, h), "w3": (n, h, d), "b1": (n, h), "b2": (n, d)}
    names = {"w2": "(N, d, h)", "w3": "(N, h, d)", "b1": "(N, h)", "b2": "(N, d)"}
    for key, shape in expected.items():
        if key in checked and checked[key].shape != shape:
            raise InputError(f"must have shape {names[key]} = {shape} to match w1 {w1.shape}, "
                             f"got {checked[key].shape}", file=source, path=key)
    for key, arr in checked.items():
        bad = ~np.isfinite(arr) | (arr > MAX_WEIGHT) | (arr < -MAX_WEIGHT)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InputError(f"contains {arr[where]!r} at index {list(where)}; all entries "
                             f"must be finite and within ±{MAX_WEIGHT:g}", file=source, path=key)
    return ExpertWeights(w1=w1, w2=checked["w2"], w3=checked.get("w3"), b1=checked.get("b1"),
                         b2=checked.get("b2"), source=source)


def _as_real_array(value: Any, source: str, key: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"must be a real numeric array, got dtype {arr.dtype}",
                         file=source, path=key)
    if arr.dtype.kind == "f" and arr.dtype.itemsize >= 4:
        return arr  # float32 / float64 kept as stored; computations upcast per slice
    return arr.astype(np.float64)


def check_kind(weights: ExpertWeights, kind: str) -> str:
    if kind not in KINDS:
        raise UsageError(f"kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind in GATED_KINDS and not weights.gated:
        raise InputError(f"missing: kind {kind} needs the up projection w3 (N, h, d)",
                         file=weights.source, path="w3")
    if kind not in GATED_KINDS and weights.gated:
        raise InputError(f"present, so the experts are gated; kind {kind} is a plain FFN "
                         "(use --kind swiglu)", file=weights.source, path="w3")
    return kind
