# The relay as a container: python -m relay serve on port 4000, configured by a LiteLLM-style YAML mounted at
# /etc/relay/config.yaml (see deploy/kubernetes/ and the README's Operations section).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY relay ./relay
RUN pip install . && useradd --system --uid 10001 --no-create-home relay

# Not root: the relay needs no privilege (port 4000, no writes).
USER 10001
EXPOSE 4000
# Liveness only: /health never touches Google. Orchestrators should probe /ready for traffic.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:4000/health', timeout=2).status != 200)"]
# SIGTERM drains: open sessions finish the response in flight (general_settings.drain_timeout), then exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "relay", "serve", "--host", "0.0.0.0", "--port", "4000"]
CMD ["--config", "/etc/relay/config.yaml"]
