"""Expert weights of one MoE layer read from a published checkpoint (``.safetensors``).

A checkpoint is a ``.safetensors`` file or a folder holding ``model.safetensors.index.json``
(sharded: the index's ``weight_map`` names the shard of every tensor) or a single
``model.safetensors``. Two tensor layouts are recognised from the tensor names (and checked
against ``config.json`` when the folder has one):

* ``mixtral``: ``model.layers.{L}.block_sparse_moe.experts.{i}.w1|w3|w2.weight``
  (gate, up, down), as Mixtral-8x7B and -8x22B publish them;
* ``mlp-experts``: ``model.layers.{L}.mlp.experts.{i}.gate_proj|up_proj|down_proj.weight``,
  the Qwen1.5/2-MoE, Qwen3-MoE, OLMoE and DeepSeek-MoE/V2 family (shared experts, named
  ``shared_expert(s)``, always run at the source and are not read).

Both are SwiGLU experts ``E(x) = W2 (silu(W1 x) ⊙ (W3 x))`` without biases, stored as PyTorch
``nn.Linear`` weights (out_features, in_features): gate and up (h, d), down (d, h). That is the
``.npz`` contract of :mod:`siftopt.similarity.weights` expert by expert, so the reader stacks
them into an :class:`ExpertWeights` with w1 = gate, w3 = up, w2 = down, all float32 (float16
and bfloat16 convert to float32 exactly; float32 is kept bit for bit).

Only the tensors of the requested layer are read, through the memory-mapped ``safe_open`` of
the ``safetensors`` library (framework ``numpy``; bfloat16 through ``ml_dtypes``), one expert
matrix at a time. Every bad input is an :class:`~siftopt.errors.InputError` naming the file and
the tensor or field.

:func:`rmsnorm_radius` gives the certified radius of the layer's MoE input: the experts see the
output of the RMSNorm ``post_attention_layernorm``, ``y = g ⊙ x / sqrt(mean(x²) + eps)``, whose
norm is at most ``√d·max|g|`` for every x (docs/bounds.md §8).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from siftopt.errors import InputError
from siftopt.io.limits import check_memory
from siftopt.similarity.weights import MAX_WEIGHT, ExpertWeights

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
#: Stored dtypes the reader accepts (safetensors names) and what they become.
DTYPES: dict[str, str] = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
#: Relative allowance on the RMSNorm radius for low-precision inference: the normalised state
#: and its product with the gain are each rounded to bf16/f16 (relative 2⁻⁸ at most each).
LOW_PRECISION_RADIUS_SLACK = 1.01
#: The same for float32 checkpoints (float32 rounding, with a wide margin).
F32_RADIUS_SLACK = 1.0 + 1e-6


@dataclass(frozen=True)
class Layout:
    """A tensor-naming scheme of routed experts: regular expression and projection names."""

    name: str
    pattern: re.Pattern[str]
    gate: str
    up: str
    down: str
    model_types: frozenset[str]

    def tensor(self, layer: int, expert: int, proj: str) -> str:
        return self.template.format(layer=layer, expert=expert, proj=proj)

    @property
    def template(self) -> str:
        if self.name == "mixtral":
            return "model.layers.{layer}.block_sparse_moe.experts.{expert}.{proj}.weight"
        return "model.layers.{layer}.mlp.experts.{expert}.{proj}.weight"


LAYOUTS: tuple[Layout, ...] = (
    Layout("mixtral",
           re.compile(r"^model\.layers\.(\d+)\.block_sparse_moe\.experts\.(\d+)\."
                      r"(w1|w2|w3)\.weight$"),
           gate="w1", up="w3", down="w2", model_types=frozenset({"mixtral"})),
    Layout("mlp-experts",
           re.compile(r"^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\."
                      r"(gate_proj|up_proj|down_proj)\.weight$"),
           gate="gate_proj", up="up_proj", down="down_proj",
           model_types=frozenset({"qwen2_moe", "qwen3_moe", "olmoe", "deepseek", "deepseek_v2",
                                  "deepseek_v3", "qwen_moe"})),
)
#: config.json fields holding the number of routed experts, the model dim and the activation.
_EXPERT_FIELDS = ("num_local_experts", "num_experts", "n_routed_experts")
_NORM = "model.layers.{layer}.post_attention_layernorm.weight"


@dataclass(frozen=True)
class Checkpoint:
    """An opened checkpoint: where every tensor is, its layout, and its MoE layers.

    ``files`` maps tensor names to the file holding them; ``experts`` maps each MoE layer to
    its number of routed experts; ``config`` is ``config.json`` (empty when absent).
    """

    path: str
    files: dict[str, str]
    layout: Layout
    experts: dict[int, int]
    config: dict[str, Any] = field(default_factory=dict)
    config_file: str | None = None

    @property
    def layers(self) -> list[int]:
        """The MoE layers, ascending."""
        return sorted(self.experts)

    def check_layer(self, layer: int) -> int:
        if layer not in self.experts:
            raise InputError(f"layer {layer} has no routed experts in the {self.layout.name} "
                             f"layout (MoE layers: {_ranges(self.layers)})", file=self.path,
                             path="--layer")
        return layer


def _ranges(values: Iterable[int]) -> str:
    """``0-3, 5, 7-9`` for a sorted list of integers."""
    out: list[str] = []
    vals = sorted(values)
    start = prev = None
    for v in [*vals, None]:
        if v is not None and prev is not None and v == prev + 1:
            prev = v
            continue
        if start is not None:
            out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = v
    return ", ".join(out)


def _require_safetensors() -> Any:
    try:
        import ml_dtypes  # noqa: F401 - registers numpy's 'bfloat16' for safetensors
        from safetensors import safe_open
    except ImportError as exc:  # pragma: no cover - both are dependencies
        raise InputError(f"reading checkpoints needs the packages safetensors and ml_dtypes "
                         f"({exc}); pip install safetensors ml_dtypes") from None
    return safe_open


def _file_keys(file: str) -> list[str]:
    safe_open = _require_safetensors()
    try:
        with safe_open(file, framework="numpy") as handle:
            return list(handle.keys())
    except FileNotFoundError:
        raise InputError("no such file", file=file) from None
    except Exception as exc:  # noqa: BLE001 - the library raises its own error types
        raise InputError(f"not a readable .safetensors file: {_oneline(exc)}", file=file) \
            from None


def _oneline(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _read_json(file: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=str(file)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({what}): {_oneline(exc)}", file=str(file)) from None
    if not isinstance(doc, dict):
        raise InputError(f"must be a JSON object ({what})", file=str(file))
    return doc


def _index_files(index: Path) -> dict[str, str]:
    doc = _read_json(index, "a sharded checkpoint index")
    weight_map = doc.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise InputError("missing or empty (a map from tensor names to shard files)",
                         file=str(index), path="weight_map")
    files: dict[str, str] = {}
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard or "/" in shard or shard.startswith("."):
            raise InputError(f"must be a shard file name in the same folder, got {shard!r}",
                             file=str(index), path=f"weight_map.{name}")
        files[name] = str(index.parent / shard)
    return files


def _locate(path: str) -> tuple[dict[str, str], Path | None]:
    """Tensor name → file, and the folder (None for a bare file)."""
    p = Path(path)
    if p.is_dir():
        if (p / INDEX_FILE).is_file():
            return _index_files(p / INDEX_FILE), p
        if (p / SINGLE_FILE).is_file():
            file = str(p / SINGLE_FILE)
            return {k: file for k in _file_keys(file)}, p
        raise InputError(f"folder has neither {INDEX_FILE} (sharded) nor {SINGLE_FILE}",
                         file=path)
    if not p.exists():
        raise InputError("no such file or folder", file=path)
    if p.name.endswith(".index.json"):
        return _index_files(p), p.parent
    return {k: path for k in _file_keys(path)}, p.parent


def _detect(path: str, names: Iterable[str], config: dict[str, Any], config_file: str | None
            ) -> tuple[Layout, dict[int, set[int]]]:
    found: dict[str, dict[int, set[int]]] = {}
    for name in names:
        for layout in LAYOUTS:
            m = layout.pattern.match(name)
            if m:
                found.setdefault(layout.name, {}).setdefault(int(m[1]), set()).add(int(m[2]))
    if not found:
        fused = [n for n in names if ".experts.gate_up_proj" in n or ".experts.w13" in n]
        hint = (f"; fused expert tensors such as {fused[0]!r} are not supported: split them "
                "per expert (docs/bounds.md §8)") if fused else ""
        raise InputError("no routed-expert tensors of a known layout (model.layers.{L}."
                         "block_sparse_moe.experts.{i}.w1|w2|w3.weight or model.layers.{L}."
                         f"mlp.experts.{{i}}.gate_proj|up_proj|down_proj.weight){hint}",
                         file=path)
    if len(found) > 1:
        raise InputError(f"mixes the expert layouts {' and '.join(sorted(found))}", file=path)
    layout = next(lay for lay in LAYOUTS if lay.name in found)
    model_type = config.get("model_type")
    if isinstance(model_type, str) and model_type not in layout.model_types and \
            any(model_type in lay.model_types for lay in LAYOUTS):
        raise InputError(f"says {model_type!r}, but the tensor names follow the "
                         f"{layout.name} layout", file=config_file, path="model_type")
    return layout, found[layout.name]


def _config_int(config: dict[str, Any], config_file: str | None, keys: Iterable[str]
                ) -> tuple[str, int] | None:
    for key in keys:
        if key in config and config[key] is not None:
            value = config[key]
            if type(value) is not int or value < 1:
                raise InputError(f"must be a positive integer, got {value!r}",
                                 file=config_file, path=key)
            return key, value
    return None


def open_checkpoint(path: str) -> Checkpoint:
    """Read the headers (never the data) of a checkpoint and detect its expert layout.

    Raises :class:`InputError` for a missing or unreadable file, a bad index or config, no or
    mixed expert layouts, missing experts or projections.
    """
    files, folder = _locate(path)
    config: dict[str, Any] = {}
    config_file = None
    if folder is not None and (folder / CONFIG_FILE).is_file():
        config_file = str(folder / CONFIG_FILE)
        config = _read_json(folder / CONFIG_FILE, "the model configuration")
    layout, layers = _detect(path, files, config, config_file)
    projs = (layout.gate, layout.up, layout.down)
    experts: dict[int, int] = {}
    declared = _config_int(config, config_file, _EXPERT_FIELDS)
    for layer, ids in sorted(layers.items()):
        n = max(ids) + 1
        missing = sorted(set(range(n)) - ids)
        if missing:
            raise InputError(f"missing: layer {layer} has experts up to {n - 1} but not "
                             f"expert {missing[0]}",
                             file=path, path=layout.tensor(layer, missing[0], layout.gate))
        for i in range(n):
            for proj in projs:
                name = layout.tensor(layer, i, proj)
                if name not in files:
                    raise InputError("missing tensor (each expert needs gate, up and down "
                                     "projections)", file=path, path=name)
        if declared is not None and declared[1] != n:
            raise InputError(f"says {declared[1]} routed experts, but layer {layer} of the "
                             f"checkpoint has {n}", file=config_file, path=declared[0])
        experts[layer] = n
    return Checkpoint(path=path, files=files, layout=layout, experts=experts, config=config,
                      config_file=config_file)


def _read_tensor(ckpt: Checkpoint, name: str, shape: tuple[int, ...] | None) -> np.ndarray:
    """One tensor as float32 (exact for F16 and BF16), checked for dtype, shape and NaN/inf."""
    file = ckpt.files[name]
    safe_open = _require_safetensors()
    try:
        with safe_open(file, framework="numpy") as handle:
            if name not in handle.keys():  # noqa: SIM118 - a safetensors handle
                raise InputError("tensor listed in the index is missing from the shard",
                                 file=file, path=name)
            view = handle.get_slice(name)
            dtype = view.get_dtype()
            if dtype not in DTYPES:
                raise InputError(f"dtype {dtype} is not supported (supported: "
                                 f"{', '.join(DTYPES)}); dequantise the checkpoint first",
                                 file=file, path=name)
            stored = tuple(int(s) for s in view.get_shape())
            if shape is not None and stored != shape:
                raise InputError(f"must have shape {shape} to match the layer's other "
                                 f"expert tensors, got {stored}", file=file, path=name)
            if len(stored) not in (1, 2) or 0 in stored:
                raise InputError(f"must be a non-empty matrix, got shape {stored}",
                                 file=file, path=name)
            raw = handle.get_tensor(name)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError("no such file (named by the checkpoint index)", file=file) from None
    except Exception as exc:  # noqa: BLE001 - the library raises its own error types
        raise InputError(f"cannot read tensor: {_oneline(exc)}", file=file, path=name) \
            from None
    arr = np.asarray(raw).astype(np.float32, copy=False)
    bad = ~np.isfinite(arr) | (np.abs(arr) > MAX_WEIGHT)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"contains {arr[where]!r} at index {list(where)}; all entries must "
                         f"be finite and within ±{MAX_WEIGHT:g}", file=file, path=name)
    return arr


def tensor_dtype(ckpt: Checkpoint, name: str) -> str:
    """The stored dtype (safetensors name, e.g. ``BF16``) of one tensor."""
    safe_open = _require_safetensors()
    with safe_open(ckpt.files[name], framework="numpy") as handle:
        return str(handle.get_slice(name).get_dtype())


def layer_weights(ckpt: Checkpoint, layer: int) -> ExpertWeights:
    """The routed experts of ``layer`` as :class:`ExpertWeights` (w1 gate, w3 up, w2 down;
    float32). Reads only this layer's tensors."""
    ckpt.check_layer(layer)
    n = ckpt.experts[layer]
    lay = ckpt.layout
    first = _read_tensor(ckpt, lay.tensor(layer, 0, lay.gate), None)
    if first.ndim != 2:
        raise InputError(f"must be a matrix (h, d), got shape {first.shape}",
                         file=ckpt.files[lay.tensor(layer, 0, lay.gate)],
                         path=lay.tensor(layer, 0, lay.gate))
    h, d = first.shape
    _check_model_dim(ckpt, d, lay.tensor(layer, 0, lay.gate))
    # float32 storage of the layer, plus float64 working copies of one expert's matrices
    check_memory(4 * 3 * n * h * d + 8 * 3 * h * d * 4,
                 f"layer {layer}'s {n} experts of {h}x{d} (float32, with float64 work copies)",
                 file=ckpt.path, path=f"--layer {layer}")
    w1 = np.empty((n, h, d), dtype=np.float32)
    w3 = np.empty((n, h, d), dtype=np.float32)
    w2 = np.empty((n, d, h), dtype=np.float32)
    for i in range(n):
        w1[i] = first if i == 0 else _read_tensor(ckpt, lay.tensor(layer, i, lay.gate), (h, d))
        w3[i] = _read_tensor(ckpt, lay.tensor(layer, i, lay.up), (h, d))
        w2[i] = _read_tensor(ckpt, lay.tensor(layer, i, lay.down), (d, h))
    return ExpertWeights(w1=w1, w2=w2, w3=w3, source=f"{ckpt.path} layer {layer}")


def _check_model_dim(ckpt: Checkpoint, d: int, name: str) -> None:
    hidden = _config_int(ckpt.config, ckpt.config_file, ("hidden_size",))
    if hidden is not None and hidden[1] != d:
        raise InputError(f"says hidden_size {hidden[1]}, but {name} has d = {d} columns",
                         file=ckpt.config_file, path="hidden_size")


def check_activation(ckpt: Checkpoint, kind: str) -> None:
    """The config's activation must be silu for kind swiglu (the only kind these layouts
    have)."""
    act = ckpt.config.get("hidden_act")
    if kind != "swiglu":
        raise InputError(f"the {ckpt.layout.name} layout has gated experts (gate, up, down); "
                         f"use --kind swiglu, not {kind}", file=ckpt.path, path="--kind")
    if act is not None and act != "silu":
        raise InputError(f"is {act!r}; kind swiglu assumes silu(gate) ⊙ up",
                         file=ckpt.config_file, path="hidden_act")


def rmsnorm_radius(ckpt: Checkpoint, layer: int) -> float:
    """Certified upper bound on ‖x‖ for the MoE input of ``layer``: ``√d·max|g|`` of its
    ``post_attention_layernorm`` gain g, times :data:`LOW_PRECISION_RADIUS_SLACK` for
    float16/bfloat16 checkpoints (:data:`F32_RADIUS_SLACK` for float32). Units of ‖x‖."""
    name = _NORM.format(layer=layer)
    if name not in ckpt.files:
        raise InputError("missing: --radius auto reads the RMSNorm gain in front of the MoE; "
                         "give --radius R instead", file=ckpt.path, path=name)
    gain = _read_tensor(ckpt, name, None)
    if gain.ndim != 1:
        raise InputError(f"must be a vector (d,), got shape {gain.shape}",
                         file=ckpt.files[name], path=name)
    low = tensor_dtype(ckpt, name) != "F32"
    slack = LOW_PRECISION_RADIUS_SLACK if low else F32_RADIUS_SLACK
    radius = math.sqrt(gain.size) * float(np.abs(gain.astype(np.float64)).max()) * slack
    if not radius > 0:
        raise InputError("is all zeros, so the layer's MoE input is 0", file=ckpt.files[name],
                         path=name)
    return float(np.nextafter(radius, np.inf))


def parse_layer(text: str) -> int | None:
    """``--layer`` value: a layer index, or None for ``all``."""
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise InputError(f"expected a layer index >= 0 or 'all', got {text!r}", path="--layer")
    return value


def is_checkpoint(path: str) -> bool:
    """Whether ``path`` names a checkpoint (``.safetensors`` file, index or folder) rather than
    an ``.npz`` weight file."""
    p = Path(path)
    return p.is_dir() or p.suffix == ".safetensors" or p.name.endswith(".index.json")


__all__ = ["DTYPES", "LAYOUTS", "Checkpoint", "Layout", "check_activation", "is_checkpoint",
           "layer_weights", "open_checkpoint", "parse_layer", "rmsnorm_radius",
           "tensor_dtype"]
