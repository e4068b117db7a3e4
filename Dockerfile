# The zuora-sync image: Airflow's own image with this project installed, its DAGs and its plugin.
# docker-compose.yaml builds it (`docker compose build`); every Airflow service and both sandboxes
# run from it.
#
# The Airflow version here must be the one pinned in pyproject.toml (tests/test_compose.py checks).
FROM apache/airflow:3.3.2-python3.11

# Directories the compose file mounts named volumes on: created here, owned by the airflow user and
# group 0 (writable by the group, for any AIRFLOW_UID), so that new volumes start with that owner.
USER root
RUN mkdir -p /opt/zuora-sync /opt/sandbox /opt/airflow/zuora_sync/staging \
    && chown -R airflow:0 /opt/zuora-sync /opt/sandbox /opt/airflow/zuora_sync \
    && chmod -R 2775 /opt/sandbox /opt/airflow/zuora_sync
USER airflow

# The package (include/zuora_sync, include/sandbox) with its pinned dependencies. Naming
# apache-airflow==$AIRFLOW_VERSION (the image's) keeps pip from changing the Airflow installed.
WORKDIR /opt/zuora-sync
COPY --chown=airflow:0 pyproject.toml README.md ./
COPY --chown=airflow:0 include/ ./include/
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" . \
    && rm -rf build include/*.egg-info

# The DAGs and the plugin, where AIRFLOW__CORE__DAGS_FOLDER and PLUGINS_FOLDER point.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/

WORKDIR /opt/airflow
