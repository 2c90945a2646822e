"""The teacher: the stage that reads its settings from the config (stage.py), the TeacherModule
(module.py), streamed extraction through Trainer.predict (extract.py), the rationale cache
(cache.py) and the optional fine-tuning stage (finetune.py). Import from the submodules: this
package stays light so that config validation does not load Lightning."""
