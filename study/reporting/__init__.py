"""The comparison of families, from MLflow to files: the arms read from an experiment (collect.py), every pair
compared per task (compute.py, with stats.py: scipy), the numbers laid out as tables (tables.py), and the files
written (write.py: Markdown and CSV, and the self-contained HTML page with its figures from html_page.py);
figures.py draws the learning curves logged with each rerun.

Reads MLflow through study.infra.tracking only, and imports nothing of the search driver or the reruns (the reruns
use stats.py and figures.py, which import nothing of the report). One way: collect -> compute -> tables ->
html_page -> write; no two modules import each other. Deliberately empty: import from the modules."""
