FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md LICENSE NOTICE ./
COPY tokenpools tokenpools
COPY tokenpools_cli tokenpools_cli
COPY streams streams
COPY connectors connectors
# package data: connectors/clickhouse/sql, connectors/kafka/maven and tokenpools_cli/examples
# are links to these folders, which the wheel build follows
COPY sql sql
COPY deploy deploy
RUN pip install --no-cache-dir '.[all]'
USER 65534
ENTRYPOINT []
