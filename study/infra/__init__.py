"""What every layer uses: errors (errors.py), the command-line plumbing every command shares (cli.py), what a user
sees while a job runs (console.py), atomic result files (files.py), named registries (registration.py), the value checks every layer
shares (validation.py), user plugins
(plugins.py), the Ray session and task waiting (ray_session.py, ray_tasks.py) and MLflow (tracking.py, the only
module of the package that imports mlflow).

Knows no search, training or report; cli.py and plugins.py look up tasks and families (lazily, or to register the
built-ins first). Deliberately empty: import from the modules."""
