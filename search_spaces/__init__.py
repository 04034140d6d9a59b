"""The built-in search spaces, <task>/<family>.yaml: installed as the package data of study.search_spaces (see
pyproject.toml) and read with importlib.resources by study.space."""
