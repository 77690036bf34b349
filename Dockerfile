# The service image: worker and API share it (the command picks the process).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY processors ./processors
COPY connectors ./connectors
COPY avro_schemas ./avro_schemas
RUN pip install --no-cache-dir . && useradd --system --uid 10001 qi
USER qi
ENTRYPOINT ["queast-integrations"]
CMD ["worker"]
