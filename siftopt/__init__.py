"""siftopt: energy-efficient expert selection for wireless distributed MoE inference.

The normative model is ``docs/model.md``. Main entry points:

* :func:`siftopt.io.instance_file.load_instance` — read and validate an instance file;
* :func:`siftopt.model.evaluate.evaluate` — the single source of truth for energy, latency and
  degradation of an action set;
* :func:`siftopt.solve.solve` — exact backends (``highs``, ``cpsat``) and policies.
"""

__version__ = "0.1.0"
