"""The teacher: gradient x input saliency (saliency.py), unit selection (selection.py), the
TeacherModule (module.py), extraction through Trainer.predict (extract.py), the rationale cache
(cache.py) and the optional fine-tuning stage (finetune.py). Import from the submodules: this
package stays light so that config validation does not load Lightning."""
