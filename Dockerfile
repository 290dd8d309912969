# One image for every process of the production profile (compose.yaml, docs/deploy.md): the webserver, the daemon,
# the code server and the Celery workers differ only in their command. NOT BUILT OR RUN IN THIS PROJECT'S CI: the
# machines it runs on have no Docker engine. The commands are the ones integration_pipelines_tests/
# test_deploy_production.py runs against real Postgres and Redis.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/home \
    IP_DATA_DIR=/data \
    UV_PROJECT_ENVIRONMENT=/opt/venv

WORKDIR /opt/integration_pipelines

# uv at the version uv.lock and the Makefile pin; the dependencies exactly as locked, with the deploy extra
# (dagster-postgres, dagster-celery, redis), then the project itself (not editable: the image holds no checkout)
RUN pip install --no-cache-dir uv==0.13.9
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-install-project --no-editable --extra deploy
COPY integration_pipelines ./integration_pipelines
RUN uv sync --frozen --no-editable --extra deploy

# The production instance and workspace in DAGSTER_HOME, as docs/deploy.md copies them; every value in them comes
# from the environment (compose.yaml). The Celery worker writes its config module under DAGSTER_HOME, so it is
# the dagster user's.
RUN useradd --create-home --uid 10001 dagster \
 && mkdir -p "$DAGSTER_HOME" /data \
 && cp integration_pipelines/deploy/production/dagster.yaml integration_pipelines/deploy/production/workspace.yaml \
       "$DAGSTER_HOME/" \
 && chown -R dagster "$DAGSTER_HOME" /data
USER dagster
WORKDIR /home/dagster

CMD ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", "/opt/dagster/home/workspace.yaml"]
