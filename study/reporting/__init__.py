"""The comparison of families: statistics of per-seed results (stats.py: scipy) and the learning-curve figures
logged with each rerun (figures.py).

Imports nothing of the search or the reruns (the reruns use stats.py and figures.py). Deliberately empty: import
from the modules."""
