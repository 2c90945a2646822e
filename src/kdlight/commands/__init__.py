"""Entry points: the command lines (`train.py`/`kdlight-train` and `eval.py`/`kdlight-eval` in cli,
`kdlight-predict`, `kdlight-attribute`) and the evaluation they run. `kdlight-data` and `kdlight-report` /
`kdlight-analyze` live beside what they serve (kdlight.data.__main__, kdlight.reports)."""
