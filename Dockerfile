# Latchkey container image.
#
#   docker build -t latchkey .
#   docker run --rm -p 8080:8080 -e LATCHKEY_SECRET="$(openssl rand -base64 32)" latchkey
#
# Without DATABASE_URL the image uses SQLite at /var/lib/latchkey/data/latchkey.db; mount a
# volume on /var/lib/latchkey to keep it. docker-compose.yml runs two nodes on PostgreSQL.

# --- build stage -------------------------------------------------------------------------
FROM rust:1-bookworm AS builder

# libpq-dev: diesel's PostgreSQL backend links libpq (SQLite is bundled into the binary).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build

# Fetch the dependencies in their own layer, so that a change to the sources alone does not
# download them again (cargo needs a target to read the manifest: a placeholder main.rs).
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs \
    && cargo fetch --locked \
    && rm -rf src

# The migrations are embedded into the binary at compile time, so they must be in the context.
COPY . .
RUN cargo build --release --locked \
    && install -m 0755 target/release/latchkey /usr/local/bin/latchkey

# --- runtime stage -----------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# An unprivileged user owns the working directory, where the SQLite database (./data) and,
# when LATCHKEY_SECRET is unset, the generated instance secret (./keys) are created.
RUN groupadd --system --gid 10001 latchkey \
    && useradd --system --uid 10001 --gid latchkey --home-dir /var/lib/latchkey \
       --no-create-home --shell /usr/sbin/nologin latchkey \
    && mkdir -p /var/lib/latchkey \
    && chown latchkey:latchkey /var/lib/latchkey

COPY --from=builder /usr/local/bin/latchkey /usr/local/bin/latchkey

USER latchkey:latchkey
WORKDIR /var/lib/latchkey
VOLUME ["/var/lib/latchkey"]

# Listen on every interface inside the container (the binary's default is loopback only).
ENV LATCHKEY_BIND=0.0.0.0:8080
EXPOSE 8080

ENTRYPOINT ["latchkey"]
CMD ["serve"]
