"""The student: the dual-task loss (losses.py), answer accuracy (metrics.py) and the
StudentModule (module.py). Import from the submodules."""
