# videobot: `docker compose up -d` (compose.yaml), or build and run by hand, see README "Docker".
#
# The base image is pinned by tag. To pin it by digest as well (the same bytes on every build):
#   docker buildx imagetools inspect python:3.11.11-slim-bookworm    # copy the top "Digest:" line
#   FROM python:3.11.11-slim-bookworm@sha256:<that digest>
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies in a layer of their own, at the versions the tests ran with (constraints.txt):
# changing the code does not reinstall them.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt -c constraints.txt \
    && rm /tmp/requirements.txt

COPY README.md ./
COPY bot ./bot
RUN pip install --no-deps . \
    && useradd --create-home --uid 10001 videobot \
    && mkdir -p /data && chown videobot /data

# Everything the bot keeps is under /data (mount a volume there). `--env-file .env` cannot move it:
# .env.example leaves DATA_DIR, DATABASE_URL, HTTP_PORT and HTTP_HOST commented out, so these win.
# The HTTP server (/healthz, webhooks) listens on all interfaces inside the container; publish
# the port only if a provider must reach the webhooks or PUBLIC_BASE_URL links.
ENV DATA_DIR=/data DATABASE_URL=sqlite:////data/videobot.db HTTP_PORT=8080 HTTP_HOST=0.0.0.0

USER videobot
VOLUME ["/data"]
EXPOSE 8080

# `videobot healthcheck` asks GET /healthz (database, Discord gateway, job tracker) with the
# standard library: no curl in the image. Exit 0 healthy, 1 unhealthy.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["videobot", "healthcheck"]

# On SIGTERM the bot takes up to 10 s (SHUTDOWN_GRACE_SECONDS) to finish what it is doing; Docker
# kills after 10 s by default, so stop it with `docker stop -t 30 videobot` (compose.yaml sets
# stop_grace_period: 30s). Unfinished jobs resume on the next start either way.
STOPSIGNAL SIGTERM
ENTRYPOINT ["videobot"]
CMD ["run"]
