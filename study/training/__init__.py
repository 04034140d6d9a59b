"""Training: fit(config, data) -> FitResult, the one training loop (train.py), and K seeds as one vmapped model
(batched.py).

Pure: imports torch, the config, tasks and families, never Ray, MLflow, Optuna or the search, so a Ray worker, a
notebook or a test calls it the same way. Deliberately empty: import from the modules."""
