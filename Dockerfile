# syntax=docker/dockerfile:1

# --- build -------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
# Queries are checked against the committed .sqlx/ metadata: no database at build time.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p qbo --bin qbo \
 && install -m 0755 target/release/qbo /usr/local/bin/qbo

# --- runtime -----------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A non-root user. /data holds the token file (QBO_TOKEN_STORE=file:/data/tokens.json); a new
# named volume mounted there inherits this ownership and mode.
RUN groupadd --system --gid 10001 qbo \
 && useradd --system --uid 10001 --gid qbo --home-dir /data --shell /usr/sbin/nologin qbo \
 && mkdir -p /data \
 && chown qbo:qbo /data \
 && chmod 0700 /data
COPY --from=builder /usr/local/bin/qbo /usr/local/bin/qbo
USER qbo
WORKDIR /data
# Containers have no usable OS keyring.
ENV QBO_TOKEN_STORE=file:/data/tokens.json
ENTRYPOINT ["qbo"]
CMD ["--help"]
