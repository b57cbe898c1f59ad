# One image for every leadpipe service; the container's command picks the service.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# The services find config/ and data/ beside their code: /app first on the path, so the `leadpipe`
# command (an installed script) runs /app's services, not the installed copy that has neither. The
# services' own files go to /tmp: /app is root's, and the services run as leadpipe.
ENV PYTHONPATH=/app LEADPIPE_DATA_DIR=/tmp/leadpipe
RUN useradd --system --uid 10001 leadpipe
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY services ./services
COPY config ./config
COPY data ./data
RUN pip install --no-compile .
USER leadpipe
# Services bind all interfaces inside the container; each sets <PREFIX>_WEB_HOST=0.0.0.0.
CMD ["python", "-m", "services.capture"]
