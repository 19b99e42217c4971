# ai-helper-core: the service (and, with another command, the worker or a Chroma server).
# Build: docker build -t ai-helper-core .   (scripts/container-check.sh builds and checks it)
#
# Stages: `deps` installs the locked dependencies (uv.lock, no dev group) into /opt/venv,
# `project` adds this project; the final image copies both onto a fresh base with only the
# OpenMP runtime llama.cpp needs, and runs as an unprivileged user. The embedded models (the local
# chat GGUF, the embedders, Whisper base in two parts) ship inside their wheels, so the
# image serves chat with no key and no network. Run-time files (the tiktoken cache, the
# joined Whisper model, generated secrets, SQLite, embedded Chroma) go to AHC_DATA_DIR=/data.

FROM python:3.11-slim AS deps
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_NO_CACHE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install "uv==0.13.9"
WORKDIR /src
# The locked dependencies alone: this stage (1.5 GB) is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project --python python3

FROM deps AS project
# The project itself, then exactly its installed files (the wheel's RECORD) gathered under
# /out, compiled as if in place: a code change rebuilds only this small layer.
COPY . .
RUN uv sync --frozen --no-dev --no-editable --python python3 \
 && /opt/venv/bin/python -c "import csv, glob, os, shutil, sysconfig; \
site = sysconfig.get_paths()['purelib']; \
record = glob.glob(site + '/ai_helper_core-*.dist-info/RECORD')[0]; \
files = [os.path.normpath(os.path.join(site, row[0])) for row in csv.reader(open(record))]; \
[(os.makedirs(os.path.dirname('/out' + f), exist_ok=True), shutil.copy2(f, '/out' + f)) for f in files]" \
 && /opt/venv/bin/python -m compileall -q -s /out -p / /out/opt/venv

FROM python:3.11-slim
# libgomp1: the OpenMP runtime of llama.cpp (xllamacpp) and CTranslate2.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libgomp1 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && useradd --uid 10001 --user-group --create-home --home-dir /home/ahc --shell /usr/sbin/nologin ahc \
 && mkdir -p /data \
 && chown ahc:ahc /data
COPY --from=deps /opt/venv /opt/venv
COPY --from=project /out/ /
ENV PATH=/opt/venv/bin:$PATH \
    AHC_DATA_DIR=/data \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER ahc
WORKDIR /home/ahc
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# SIGTERM: uvicorn stops accepting, lets requests and streams finish within
# AHC_SHUTDOWN_GRACE_SECONDS, then flushes usage events and hands jobs back.
STOPSIGNAL SIGTERM
CMD ["ai-helper-core", "serve", "--host", "0.0.0.0", "--port", "8000"]
