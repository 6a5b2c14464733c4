# tdauto: one image for every process (beat, the worker pools, Flower, the CLI).
#
#   docker build -t tdauto .
#   docker run --rm tdauto --help
#   docker run --rm -e TDAUTO_BROKER_URL=redis://HOST:6379/0 -v tdauto-data:/data tdauto worker cpu
#
# The entry point is the `tdauto` command, so the container's command is a subcommand
# (`beat`, `worker cpu`, `flower --address 0.0.0.0`, `task list`, ...). docker-compose.yml at
# the repository root runs the whole distributed system from this image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TDAUTO_DATA_DIR=/data

# An unprivileged user owns the data dir; a named volume mounted on /data starts with this
# ownership, so the processes can write tasks, logs, backups and Flower's state there.
RUN groupadd --system --gid 10001 tdauto \
    && useradd --system --uid 10001 --gid tdauto --create-home --home-dir /home/tdauto \
       --shell /usr/sbin/nologin tdauto \
    && mkdir -p /data \
    && chown tdauto:tdauto /data

# Only what the package is built from, so a local .venv, data dir or .git never enters the
# image. The source is removed after the install: the installed package is what runs.
WORKDIR /src
COPY pyproject.toml README.md beat_schedule.py ./
COPY tdauto ./tdauto
COPY td_generator ./td_generator
COPY workers ./workers
RUN pip install . \
    && rm -rf /src

WORKDIR /home/tdauto
USER tdauto

EXPOSE 5555
ENTRYPOINT ["tdauto"]
CMD ["--help"]
