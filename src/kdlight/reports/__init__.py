"""Reading runs back: the report over runs and sweeps (report.py), the analyses of rationales and
students (analysis.py, with the pure measures in measures.py), HTML views and charts (views.py),
the quickstart's table (quickstart.py), Markdown tables (markdown.py) and the Hydra callbacks that write them during sweeps
(callbacks.py). A training run imports only the pure parts it logs: views.py and measures.py."""
