"""Monte Carlo simulation of a decision under Rayleigh fast fading (MODEL.md §5).

``simulate(inst, method)`` solves the instance once with the method (exact backend or policy)
from the channel *statistics*, then draws channel realisations and applies the decision:

* every run draws ``X↑_m, X↓_m ~ Exp(1)`` for every remote node m (all nodes, used or not, so
  that every method and both CSI modes see the same channel for the same seed);
* a node m with load ``n_m > 0`` is **in outage** in a run when its uplink fails
  (``X↑ < x_th↑(n_m)``) or its downlink fails (``X↓ < x_th↓(n_m)``); a node whose uplink failed
  computes nothing and sends nothing back (:func:`realised_node_energy`);
* every slot served by a node in outage falls back to skip: its degradation becomes ``β_i``
  instead of its planned cost. A token sent to a node uses one round trip for all its slots on
  that node, so those slots fail together;
* the run's energy is ``Σ_m`` the realised node energy (J).

With ``csi="instantaneous"`` every realisation is also solved as a slow-fading instance with the
realised gains ``ḡ·X`` (which measures the value of channel knowledge); the statistical decision
is simulated on the very same draws for a paired comparison.

Modules, one concern each:

* :mod:`.stats` — means and frequencies with their 95% confidence intervals;
* :mod:`.plan` — the decision as the simulation sees it, the fallback to skip, and the closed-form
  expectations of the degradation statistics;
* :mod:`.channel` — drawing realisations, what a direction and a node spend in each, and
  applying a decision to a chunk of realisations;
* :mod:`.report` — the per-CSI-mode report and its assembly from the chunks;
* :mod:`.instantaneous` — re-solving every realisation with the realised gains;
* :mod:`.run` — the entry point :func:`simulate`;
* :mod:`.output` — the JSON object of ``siftopt simulate --format json``.

Every reported statistic, its confidence interval and its closed-form prediction are defined in
docs/fading.md §8 ("Monte Carlo validation"). Units: J for energies; degradations are in the
units of β and δ (relative output error); rates and shares are fractions in [0, 1].
"""

from siftopt.analysis.simulate.channel import (
    CHUNK_RUNS,
    ChunkOutcome,
    LinkSample,
    apply_channel,
    draw_chunks,
    rayleigh_tables,
    realised_direction_energy,
    realised_energy,
    realised_node_energy,
    sample_link_success,
)
from siftopt.analysis.simulate.instantaneous import X_MIN, realised_instance
from siftopt.analysis.simulate.output import csi_report_json, report_json
from siftopt.analysis.simulate.plan import (
    MAX_PATTERN_NODES,
    DegradationSummary,
    Expectations,
    Plan,
    expectations,
    outage_patterns,
    plan_from_evaluation,
    realised_degradation,
    slot_nodes,
    summarise_degradation,
)
from siftopt.analysis.simulate.report import (
    CsiReport,
    InstantaneousExtras,
    NodeStats,
    SimulationReport,
)
from siftopt.analysis.simulate.run import DEFAULT_RUNS, Progress, check_options, simulate
from siftopt.analysis.simulate.stats import (
    Z95,
    Estimate,
    mean_estimate,
    proportion_estimate,
    wilson_interval,
)

__all__ = [
    "CHUNK_RUNS", "DEFAULT_RUNS", "MAX_PATTERN_NODES", "X_MIN", "Z95", "ChunkOutcome",
    "CsiReport", "DegradationSummary", "Estimate", "Expectations", "InstantaneousExtras",
    "LinkSample", "NodeStats", "Plan", "Progress", "SimulationReport", "apply_channel",
    "check_options", "csi_report_json", "draw_chunks", "expectations", "mean_estimate",
    "outage_patterns", "plan_from_evaluation", "proportion_estimate", "rayleigh_tables",
    "realised_degradation", "realised_direction_energy", "realised_energy", "realised_instance",
    "realised_node_energy", "report_json", "sample_link_success", "simulate", "slot_nodes",
    "summarise_degradation", "wilson_interval",
]
