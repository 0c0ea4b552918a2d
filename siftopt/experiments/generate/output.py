"""Writing generated instances: one ``.json`` per instance (``.npz`` sidecar when large) and a
``manifest.json`` describing them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from siftopt.errors import InputError
from siftopt.experiments.generate.build import Generated, generate
from siftopt.experiments.generate.config import GeneratorConfig
from siftopt.experiments.generate.presets import ARCHITECTURES
from siftopt.facade import infeasibility_reason
from siftopt.io.instance_file import large_array_fields, save_instance
from siftopt.model.evaluate import evaluate
from siftopt.model.instance import Instance
from siftopt.model.problem import problem_data
from siftopt.policies import local, topk
from siftopt.version import __version__

#: Arrays with more entries than this go to the ``.npz`` sidecar.
SIDECAR_THRESHOLD = 4096


def quick_checks(inst: Instance) -> dict[str, Any]:
    """Cheap facts about an instance: node caps, Top-K and local-only outcomes (energies in J).

    ``trivial`` is true when serving every slot locally (or skipping) meets the budgets, i.e.
    the optimum is 0 J; ``infeasible_reason`` is the per-token proof of infeasibility, if any.
    """
    data = problem_data(inst)
    top = evaluate(inst, topk(inst))
    loc = evaluate(inst, local(inst))
    return {"latency_s": inst.latency_s, "caps": [int(c) for c in data.caps[1:]],
            "reachable_nodes": int((data.caps[1:] >= 1).sum()),
            "topk_energy_j": top.energy_j, "topk_feasible": top.feasible,
            "trivial": loc.feasible, "infeasible_reason": infeasibility_reason(data)}


def write_instance(item: Generated, out_dir: Path) -> dict[str, Any]:
    """Write one instance (and its sidecar); return its manifest entry."""
    inst = item.instance
    path = out_dir / f"{inst.name}.json"
    large = large_array_fields(inst, SIDECAR_THRESHOLD)
    save_instance(inst, path, npz_fields=large or None)
    arch = ARCHITECTURES[item.config.preset]
    entry: dict[str, Any] = {"file": path.name, "name": inst.name, "seed": item.seed,
                             "config": item.config.to_dict(),
                             "model": {"hf_id": arch.hf_id, "shared_experts": arch.shared_experts,
                                       "ffn_dim": arch.ffn_dim}}
    if large:
        entry["arrays"] = path.with_suffix(".npz").name
    entry.update(quick_checks(inst))
    entry.update(item.facts)
    return entry


MANIFEST_FILE = "manifest.json"


def earlier_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest already in ``out`` (None when there is none), checked before anything is
    written: a ``manifest.json`` that is unreadable or was not written by ``siftopt generate``
    (no ``generator`` and ``instances``) is an :class:`InputError`, so that it is never
    overwritten."""
    path = out / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the manifest already in the folder ({exc}); move it "
                         "away or choose another folder", file=str(path)) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("generator"), dict) \
            or not isinstance(doc.get("instances"), list):
        raise InputError("the folder holds a manifest.json not written by `siftopt generate`; "
                         "choose another folder (or move the file away)", file=str(path))
    return doc


def write_manifest(out: Path, description: str, generator: dict[str, Any],
                   entries: list[dict[str, Any]], earlier: dict[str, Any] | None
                   ) -> dict[str, Any]:
    """Write ``out/manifest.json`` listing this run's ``entries`` and the entries of the
    ``earlier`` manifest whose files are still in the folder and were not rewritten now (an
    instance written again replaces its entry); earlier runs' ``generator`` blocks are kept in
    ``earlier_runs``. Returns the manifest written."""
    kept: list[dict[str, Any]] = []
    runs: list[Any] = []
    if earlier is not None:
        written = {e["file"] for e in entries}
        kept = [e for e in earlier["instances"] if isinstance(e, dict)
                and isinstance(e.get("file"), str) and e["file"] not in written
                and (out / e["file"]).is_file()]
        runs = [*earlier.get("earlier_runs", []), earlier["generator"]]
    manifest: dict[str, Any] = {"description": description, "generator": generator,
                                "instances": kept + entries}
    if runs:
        manifest["earlier_runs"] = runs
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, allow_nan=False) + "\n",
                                     encoding="utf-8")
    return manifest


def write_instances(config: GeneratorConfig, seeds: list[int], out_dir: str | Path
                    ) -> dict[str, Any]:
    """Generate and write one instance per seed into ``out_dir`` and merge them into its
    ``manifest.json`` (:func:`write_manifest`: entries of earlier runs whose files are still
    there are kept).

    Returns this run's manifest (its ``generator`` block and its ``instances``) with
    ``listed``, the number of instances the merged file lists. A folder whose
    ``manifest.json`` was not written by ``siftopt generate`` is refused before anything is
    written (:func:`earlier_manifest`).
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder: {exc.strerror or exc}",
                         file=str(out)) from None
    earlier = earlier_manifest(out)
    started = time.perf_counter()
    entries = [write_instance(generate(config, seed), out) for seed in seeds]
    description = ("Instances written by `siftopt generate`; every figure is in SI units "
                   "(s, J, m, dB). Shared experts run at the source and are not in the "
                   "problem.")
    generator = {"siftopt_version": __version__, "config": config.to_dict(),
                 "seeds": list(seeds), "elapsed_s": round(time.perf_counter() - started, 3)}
    merged = write_manifest(out, description, generator, entries, earlier)
    return {"description": description, "generator": generator, "instances": entries,
            "listed": len(merged["instances"])}
