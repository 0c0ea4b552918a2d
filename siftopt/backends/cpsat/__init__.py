"""OR-Tools CP-SAT backends: the slot model and the pattern model (:mod:`siftopt.backends`
lists the modules)."""
