FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY tokenpools tokenpools
COPY streams streams
COPY connectors connectors
COPY sql sql
COPY deploy deploy
RUN pip install --no-cache-dir .
ENV TOKENPOOLS_SQL_DIR=/app/sql
USER 65534
ENTRYPOINT []
