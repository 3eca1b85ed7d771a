# MCP Hub: multi-stage build, non-root user, health check on /health.
# Debian 13 (trixie), whose nodejs is 20: what npm MCP servers (`npx ...`) need.
FROM python:3.11-slim-trixie AS build
WORKDIR /src
COPY setup.cfg pyproject.toml README.md LICENSE ./
COPY hub ./hub
COPY actors ./actors
COPY web ./web
COPY schemas ./schemas
# The hub and its `cluster` extra (redis-py), so that one image runs alone or as a cluster's replica.
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[cluster]'

FROM python:3.11-slim-trixie
# The commands MCP servers are started with: python (this image), node, npm and npx (Debian's
# nodejs and npm), uv and uvx (from PyPI). tests/test_deploy.py reads these lines. bubblewrap
# sandboxes each stdio server (docs/security.md: a container needs namespaces allowed for it).
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm bubblewrap \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv==0.13.8
RUN useradd --create-home --uid 10001 hub && mkdir -p /data && chown hub /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'mcp-hub[cluster]' && rm -rf /wheels
WORKDIR /app
COPY config ./config
COPY plugins ./plugins
ENV MCP_HUB_CONFIG=/app/config/docker.yaml \
    MCP_HUB_PLUGINS_DIR=/app/plugins \
    LOG_LEVEL=INFO \
    PYTHONUNBUFFERED=1
USER hub
VOLUME ["/data"]
EXPOSE 8080 8000 8081
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4).status == 200 else 1)"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "hub", "serve"]
