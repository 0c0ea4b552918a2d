"""``python -m siftopt`` runs the command line."""

from siftopt.cli import run

run()
