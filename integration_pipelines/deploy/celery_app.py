"""The Celery app of the production profile's step workers:

    dagster-celery worker start -A integration_pipelines.deploy.celery_app -n worker-a -- --concurrency=1

It is dagster-celery's own app (`dagster_celery.app`: the same task names and queue), built with the broker and
result backend read from the environment (IP_CELERY_BROKER_URL, IP_CELERY_BACKEND_URL) when the worker starts,
exactly as the executor of `integration_pipelines.deploy.production` reads them in the run worker. With
`dagster-celery worker start -y <yaml>` instead, dagster-celery would write the resolved URLs (a broker password
among them) into a Python file under $DAGSTER_HOME; this way they stay in the process environment only.

A worker needs what the code server needs: the package installed, the same IP_* settings and system credentials,
DAGSTER_HOME with the production dagster.yaml (the DAGSTER_PG_* variables), and, while the warehouse is the local
DuckDB file, the same IP_DATA_DIR.

The worker's main process loads the code location (`integration_pipelines.deploy.production`) and builds its jobs
before it forks its pool processes, so each starts warm (a cold one took 20-27 s over its first step on a loaded
2-core machine, 5 s over the next ones), and a worker whose settings do not load fails at its start, not at its
first step.
"""

from __future__ import annotations

import os

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task, create_task

from . import CELERY_BACKEND_ENV, CELERY_BROKER_ENV, production


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise RuntimeError(f"{name} is not set: the Celery worker reads its broker and result backend from "
                           f"{CELERY_BROKER_ENV} and {CELERY_BACKEND_ENV} (docs/deploy.md)")
    return value


# build every job once, before the pool forks (the definitions are cached on the Definitions object)
production.defs.get_repository_def().get_all_jobs()

app = make_app(CeleryExecutor.for_cli(broker=_required(CELERY_BROKER_ENV),
                                      backend=_required(CELERY_BACKEND_ENV)).app_args())

execute_plan = create_task(app)
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)
