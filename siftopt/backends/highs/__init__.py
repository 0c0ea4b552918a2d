"""HiGHS backends: the pattern master and the slot MILP, through highspy directly or Pyomo
(:mod:`siftopt.backends` lists the modules)."""
