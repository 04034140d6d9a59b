"""Multi-seed reruns of one config (reruns.py): seeds trained in parallel as Ray tasks (seed_tasks.py, what a Ray
worker imports: kept light), each logged to MLflow by the driver (the only writer) as it lands, idempotent
(finished seeds are not trained again), diverged seeds counted.

Uses training for the fits, study.infra for Ray and MLflow (tracking), and reporting's stats and figures for the
summary the parent run records; imports nothing of the search or of the report. Deliberately empty: import from the
modules."""
