"""Deployment files shipped with the package.

- `dagster.yaml`, `workspace.yaml`: the one-machine instance of `integration-pipelines demo` (SQLite storage).
- `production/`: the instance and workspace of the production profile (Postgres storage, the run queue with
  per-system limits, steps on Celery workers); docs/deploy.md walks through it.
- `production.py`: the production profile's code location, the project's definitions with Celery as the
  default executor; `celery_app.py`: the Celery app its workers run.
"""

# Where the production profile's Celery executor and workers read the broker and the result backend.
CELERY_BROKER_ENV = "IP_CELERY_BROKER_URL"
CELERY_BACKEND_ENV = "IP_CELERY_BACKEND_URL"
