"""Realistic instances from named presets (``siftopt generate``), reproducible by seed.

* :mod:`.presets` — MoE architectures (public configs) and wireless scenarios;
* :mod:`.config` — :class:`GeneratorConfig`, every knob with its unit and default;
* :mod:`.build` — :func:`generate` assembles one instance from a config and a seed;
* :mod:`.output` — :func:`write_instances` writes files, sidecars and the manifest.
"""

from siftopt.experiments.generate.build import Generated, generate, instance_name
from siftopt.experiments.generate.config import (
    BUDGETS,
    PARAMETERS,
    PLACEMENTS,
    GeneratorConfig,
    check_parameter,
    config_from_mapping,
)
from siftopt.experiments.generate.output import quick_checks, write_instances
from siftopt.experiments.generate.presets import ARCHITECTURES, SCENARIOS, Architecture, Scenario

__all__ = ["ARCHITECTURES", "BUDGETS", "PARAMETERS", "PLACEMENTS", "SCENARIOS", "Architecture",
           "Generated", "GeneratorConfig", "Scenario", "check_parameter", "config_from_mapping",
           "generate", "instance_name", "quick_checks", "write_instances"]
