"""Formulations of (P) that are independent of any solver: the pattern space, its enumeration
and pricing, the recovery of actions, and the decode rule (:mod:`.patterns` gives the
overview)."""
