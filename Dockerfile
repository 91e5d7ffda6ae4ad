# ukg2d365 in a container: the CLI is the entrypoint, it runs as an unprivileged user, and its state (the
# ledger, the encrypted credential store) lives in a volume. The config is mounted read-only; secrets come
# from the environment (--env-file) or the store in the volume. See README.md, "Running it in a container".
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UKG2D365_CONFIG=/etc/ukg2d365/ukg2d365.yaml \
    UKG2D365_CREDENTIALS_BACKEND=file \
    UKG2D365_CREDENTIALS_FILE=/var/lib/ukg2d365/credentials.enc

RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/ukg2d365 --shell /usr/sbin/nologin ukg2d365 \
 && install -d -m 0700 -o ukg2d365 -g ukg2d365 /var/lib/ukg2d365 \
 && install -d -m 0755 /etc/ukg2d365

COPY pyproject.toml README.md LICENSE config.example.yaml /src/
COPY ukg2d365 /src/ukg2d365
RUN pip install /src && rm -rf /src

USER ukg2d365
WORKDIR /var/lib/ukg2d365
VOLUME /var/lib/ukg2d365
ENTRYPOINT ["ukg2d365"]
CMD ["--help"]
