FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DATA_DIR=/data DATABASE_URL=sqlite:////data/videobot.db

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN pip install . && useradd --create-home --uid 10001 videobot && mkdir -p /data && chown videobot /data

USER videobot
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["videobot"]
CMD ["run"]
