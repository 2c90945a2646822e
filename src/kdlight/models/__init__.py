"""Models as files and objects: loading a checkpoint or hub id (loading), the tiny random models tests and
the quickstart build locally (tiny), LoRA adapters (lora), a trained student's export folder (export).
How a family encodes, trains and generates (and the pipeline class an export loads with) is kdlight.families."""
