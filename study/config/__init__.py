"""What a run is: the flat config (schema.py: keys, defaults, value rules, validate_config), each family's search
space as data (space.py: search_spaces/<task>/<family>.yaml -> defaults, bounds, an Optuna define-by-run), configs
read from files (files.py: a best_config.yaml, a mapping, a family's search-space defaults) and published tables as
configs (presets.py).

Imports tasks, families (a config names both) and infra; nothing here trains, searches or talks to Ray or MLflow.
Deliberately empty: import from the modules."""
