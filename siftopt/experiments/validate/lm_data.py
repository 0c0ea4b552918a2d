"""The language model's text and its trained weights on disk.

* Text: the help topics that ship with Python (``pydoc_data.topics``, about 465 000
  characters of English prose and code from the Python reference manual), joined in
  sorted topic order and encoded as UTF-8 bytes. The last ``held_out_fraction`` of the bytes
  is the held-out split, never seen in training.
* Weights: a ``model.safetensors`` file in the tensor naming of the Qwen-MoE/OLMoE family
  (``model.layers.{L}.mlp.experts.{i}.gate_proj.weight`` …, ``post_attention_layernorm`` the
  RMSNorm in front of the MoE), so ``siftopt similarity`` reads it like any published
  checkpoint. Trained weights are cached under ``~/.cache/siftopt/lm`` (or ``--cache``), in a
  folder named by a hash of everything that determines them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from siftopt.errors import InputError
from siftopt.experiments.validate.lm import LMConfig, LMTrainConfig, Params, layer_names

#: Version of the training recipe; bump to invalidate cached weights.
RECIPE_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"

#: Our parameter names → checkpoint tensor names (per layer; ``{L}`` is the layer).
_LAYER_TENSORS = {
    "ln1": "model.layers.{L}.input_layernorm.weight",
    "wq": "model.layers.{L}.self_attn.q_proj.weight",
    "wk": "model.layers.{L}.self_attn.k_proj.weight",
    "wv": "model.layers.{L}.self_attn.v_proj.weight",
    "wo": "model.layers.{L}.self_attn.o_proj.weight",
    "ln2": "model.layers.{L}.post_attention_layernorm.weight",
    "wr": "model.layers.{L}.mlp.gate.weight",
}
_EXPERT_TENSORS = {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj"}
_GLOBAL_TENSORS = {"emb": "model.embed_tokens.weight", "pos": "model.embed_positions.weight",
                   "lnf": "model.norm.weight", "head": "lm_head.weight"}


def corpus_bytes() -> np.ndarray:
    """The Python help topics as a uint8 array (UTF-8)."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # pragma: no cover - part of the standard library
        raise InputError("the standard library's pydoc_data.topics is missing; the language "
                         "model needs its text") from None
    text = "\n\n".join(topics[k] for k in sorted(topics))
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def split(data: np.ndarray, held_out_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out): the held-out split is the last ``held_out_fraction`` of the bytes."""
    cut = int(round(data.size * (1.0 - held_out_fraction)))
    return data[:cut], data[cut:]


def held_out_sequences(held: np.ndarray, count: int, context: int) -> np.ndarray:
    """``count`` consecutive non-overlapping windows of ``context + 1`` bytes from the start
    of the held-out split, (count, context + 1)."""
    need = count * (context + 1)
    if need > held.size:
        raise InputError(f"held-out text has {held.size} bytes, {need} needed for {count} "
                         f"sequences of {context + 1}")
    return held[:need].reshape(count, context + 1).astype(np.int64)


def checkpoint_tensors(p: Params, cfg: LMConfig) -> dict[str, np.ndarray]:
    """The weights under checkpoint tensor names (experts one tensor each, as published)."""
    out = {name: p[key] for key, name in _GLOBAL_TENSORS.items()}
    for layer in range(cfg.layers):
        k = layer_names(layer)
        for key, name in _LAYER_TENSORS.items():
            out[name.format(L=layer)] = p[k[key]]
        for key, proj in _EXPERT_TENSORS.items():
            for i in range(cfg.num_experts):
                out[f"model.layers.{layer}.mlp.experts.{i}.{proj}.weight"] = p[k[key]][i]
    return {name: np.ascontiguousarray(v, dtype=np.float32) for name, v in out.items()}


def params_from_tensors(t: dict[str, np.ndarray], cfg: LMConfig) -> Params:
    """Inverse of :func:`checkpoint_tensors`."""
    p: Params = {key: t[name] for key, name in _GLOBAL_TENSORS.items()}
    for layer in range(cfg.layers):
        k = layer_names(layer)
        for key, name in _LAYER_TENSORS.items():
            p[k[key]] = t[name.format(L=layer)]
        for key, proj in _EXPERT_TENSORS.items():
            p[k[key]] = np.stack([t[f"model.layers.{layer}.mlp.experts.{i}.{proj}.weight"]
                                  for i in range(cfg.num_experts)])
    return p


def config_json(cfg: LMConfig) -> dict[str, Any]:
    """A ``config.json`` in the fields :mod:`siftopt.similarity.checkpoint` checks."""
    return {"model_type": "qwen2_moe", "num_experts": cfg.num_experts,
            "num_experts_per_tok": cfg.top_k, "hidden_size": cfg.model_dim,
            "moe_intermediate_size": cfg.ffn_dim, "num_hidden_layers": cfg.layers,
            "hidden_act": "silu", "norm_topk_prob": True, "vocab_size": cfg.vocab,
            "max_position_embeddings": cfg.context}


def cache_key(cfg: LMConfig, tc: LMTrainConfig, data: np.ndarray) -> str:
    """Hash of the recipe version, the configs and the training bytes."""
    doc = {"recipe": RECIPE_VERSION, "model": asdict(cfg), "train": asdict(tc),
           "data": hashlib.sha256(data.tobytes()).hexdigest()}
    text = json.dumps(doc, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/siftopt/lm`` (``~/.cache/siftopt/lm``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "siftopt" / "lm"


def save_weights(folder: Path, p: Params, cfg: LMConfig, meta: dict[str, Any]) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``meta.json`` into ``folder``."""
    from safetensors.numpy import save_file

    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (WEIGHTS_FILE + ".tmp")
        save_file(checkpoint_tensors(p, cfg), str(tmp))
        os.replace(tmp, folder / WEIGHTS_FILE)
        (folder / "config.json").write_text(json.dumps(config_json(cfg), indent=1) + "\n",
                                            encoding="utf-8")
        (folder / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write the weight cache: {exc.strerror or exc}",
                         file=str(folder)) from None
    return folder / WEIGHTS_FILE


def load_weights(folder: Path, cfg: LMConfig) -> tuple[Params, dict[str, Any]] | None:
    """Cached weights and their meta data, or None when the folder has none (or they are
    unreadable: the caller retrains)."""
    file, meta_file = folder / WEIGHTS_FILE, folder / META_FILE
    if not (file.is_file() and meta_file.is_file()):
        return None
    try:
        from safetensors.numpy import load_file

        tensors = load_file(str(file))
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        return params_from_tensors(tensors, cfg), meta
    except Exception:  # noqa: BLE001 - a broken cache entry is retrained, not fatal
        return None


__all__ = ["META_FILE", "RECIPE_VERSION", "WEIGHTS_FILE", "cache_key", "checkpoint_tensors",
           "config_json", "corpus_bytes", "default_cache_dir", "held_out_sequences",
           "load_weights", "params_from_tensors", "save_weights", "split"]
