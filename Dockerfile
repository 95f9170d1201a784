# ml-server: the container runs exactly `ml-server serve`, configured by MLSERVER_* variables.
#
#   docker build -t ml-server .
#   docker run --rm -p 8080:8080 -v mlserver-data:/data ml-server       # the catalog, SQLite in /data
#   docker run --rm -p 8080:8080 -e MLSERVER_STORE=postgresql://user:secret@db:5432/models ml-server
#   docker run --rm ml-server serve --help                              # every option and variable
#
# NOTE: tests/test_containers.py parses this file and runs ENTRYPOINT + CMD with the ENV below,
# and the HEALTHCHECK command against it: keep ENV in key=value form without $-substitution
# and ENTRYPOINT, CMD and HEALTHCHECK in exec (JSON) form.

# -- build: a wheel from the sources (no compiler, no sources left in the image) ------------
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src/ src/
RUN pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /wheels .

# -- runtime --------------------------------------------------------------------------------
FROM python:3.11-slim

# postgres: the store replicas share. onnx, skops: a version is loaded by whichever replica
# serves it, so every replica needs every serializer a version may have been written with.
# dask: the same image runs `dask scheduler` and `dask worker`, which unpickle the wrappers.
# Build a smaller image with e.g. `--build-arg EXTRAS=postgres`.
ARG EXTRAS=postgres,onnx,skops,dask

COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --disable-pip-version-check "$(echo /wheels/*.whl)[${EXTRAS}]" \
 && rm -rf /wheels

# A fixed numeric user, so `runAsNonRoot` checks can verify it; /app is the working directory
# (a module TARGET is imported from it), /data holds the default SQLite store.
RUN groupadd --system --gid 10001 mlserver \
 && useradd --system --uid 10001 --gid mlserver --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin mlserver \
 && mkdir -p /app /data \
 && chown mlserver:mlserver /app /data
WORKDIR /app
USER 10001:10001

# Everything else comes from the environment at run time: MLSERVER_STORE (a PostgreSQL URL to
# share models between replicas), MLSERVER_TARGET (your registry), MLSERVER_EXECUTOR=dask with
# MLSERVER_SCHEDULER=tcp://host:8786 (train on a Dask cluster), MLSERVER_THREADS, ...
# (`docker run --rm ml-server serve --help` lists them all).
ENV MLSERVER_HOST=0.0.0.0 \
    MLSERVER_PORT=8080 \
    MLSERVER_STORE=sqlite:////data/mlserver.db \
    MLSERVER_EXECUTOR=thread \
    MLSERVER_LOG_LEVEL=info \
    PYTHONUNBUFFERED=1

EXPOSE 8080

# NOTE: slim images have no curl. The ProxyHandler({}) keeps HTTP(S)_PROXY variables from
# sending a local probe to a proxy. Any error or non-2xx answer exits 1 (unhealthy).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.build_opener(r.ProxyHandler({})).open('http://127.0.0.1:%s/health' % os.environ.get('MLSERVER_PORT', '8080'), timeout=4)"]

# SIGTERM: stop accepting, finish in-flight requests (MLSERVER_GRACEFUL_TIMEOUT) and running
# training jobs, exit 0. Give it time: `docker run --stop-timeout 60`, compose stop_grace_period.
STOPSIGNAL SIGTERM
ENTRYPOINT ["ml-server"]
CMD ["serve"]
