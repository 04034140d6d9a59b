"""What a run is: the flat config (schema.py: keys, defaults, value rules, validate_config), the value checks every
layer shares (validation.py), configs read from files (files.py: a best_config.yaml, a mapping, a family's
search-space defaults) and published tables as configs (presets.py).

Imports tasks and families (a config names both) and the search spaces' defaults; nothing here trains, searches or
talks to Ray or MLflow. Deliberately empty: import from the modules (study.tasks imports study.config.validation,
so this file importing schema.py, which imports study.tasks, would be an import circle)."""
