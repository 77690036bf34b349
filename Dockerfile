# The service image: worker and API share it (the command picks the process).
# Built as `docker build -t queast-integrations:<version> .` (the version of pyproject.toml);
# deploy/k8s/ and its test expect that name. The user is numeric so that Kubernetes can check
# `runAsNonRoot` against it.
FROM python:3.11-slim
LABEL org.opencontainers.image.title="queast-integrations"
WORKDIR /app
COPY pyproject.toml README.md ./
COPY processors ./processors
COPY connectors ./connectors
COPY avro_schemas ./avro_schemas
RUN pip install --no-cache-dir . \
    && groupadd --system --gid 10001 qi \
    && useradd --system --uid 10001 --gid 10001 --no-create-home qi
USER 10001:10001
ENTRYPOINT ["queast-integrations"]
CMD ["worker"]
