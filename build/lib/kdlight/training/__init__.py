"""Training code shared by the student and the teacher's optional fine-tuning stage: the label-task
LightningModule (module.py), the dual-task objective (losses.py) and answer accuracy (metrics.py)."""
