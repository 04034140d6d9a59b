"""The published-table presets, <table>.yaml: installed as the package data of study.preset_tables (see
pyproject.toml) and read with importlib.resources by the module study.presets."""
