# The arena as a container: `docker build -t arena .` then
# `docker run -p 8000:8000 -v arena-data:/data arena` (add `-e ARENA_DEMO=true` for the demo models).

# Build stage: the arena's wheel (with static/, migrations/ and alembic.ini inside) and the wheels
# of its dependencies at the versions requirements.lock pins, hashes checked, so the final image
# needs neither the source tree nor a compiler, and two builds install the same packages.
FROM python:3.11-slim AS build
WORKDIR /src
COPY requirements.lock ./
RUN pip wheel --no-cache-dir --require-hashes --wheel-dir /wheels -r requirements.lock
COPY pyproject.toml README.md alembic.ini ./
COPY arena ./arena
COPY migrations ./migrations
COPY static ./static
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ARENA_DATA_DIR=/data \
    ARENA_PORT=8000
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin arena \
    && mkdir /data && chown arena:arena /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels arena && rm -rf /wheels
USER arena
WORKDIR /data
# The SQLite database and the generated secret key live here; keep it on a volume.
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ARENA_PORT', '8000'), timeout=4)"
# Migrations first (a no-op when the schema is current), then the server on every interface.
CMD ["sh", "-c", "arena db upgrade && exec arena serve --host 0.0.0.0"]
