# Murmuration service image: slim Python, pinned dependencies, non-root, health-checked.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000

WORKDIR /app
# An init as PID 1: the kernel drops a signal PID 1 has no handler for, and Python has none for SIGTERM
# until the service installs its own (the interpreter's first tenth of a second).
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY service ./service
COPY handlers ./handlers
COPY models ./models
# deploy/ carries the Braintree gateway emulator used by the credential-less compose demo.
COPY deploy ./deploy
RUN useradd --system --uid 10001 --no-create-home murmuration
USER murmuration

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import os,sys,urllib.request; sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/health', timeout=3).status != 200)"
# Sanic drains requests and closes websockets (1001) on SIGTERM.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tini", "--"]
CMD ["python", "-m", "service"]
