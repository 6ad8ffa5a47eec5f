# One image for every service of the project (mock, prod, worker, gateway); docker-compose.yml
# picks the process with `command`. Secrets come from the environment at run time, never the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CUTOVER_VAR_DIR=/app/var

WORKDIR /app
COPY . .
RUN pip install . \
    && useradd --create-home --uid 10001 app \
    && mkdir -p /app/var \
    && chown app /app/var

USER app
EXPOSE 8000 8001 8002 8009
CMD ["python", "-m", "mock_backend", "--host", "0.0.0.0", "--port", "8001"]
