"""The student: a LabelTaskModule that also learns to write the rationale (module.py)."""
