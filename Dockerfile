# Build stage: compile the release binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked && strip target/release/statekeeper

# Runtime stage: a small image running as a non-root user.
FROM debian:bookworm-slim
# ca-certificates: the authorities rediss:// (TLS) checks a managed Redis's certificate against.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --no-create-home statekeeper
WORKDIR /app
COPY --from=build /src/target/release/statekeeper /usr/local/bin/statekeeper
COPY config ./config
USER 10001
ENV STATEKEEPER__SERVER__HOST=0.0.0.0 \
    STATEKEEPER__SERVER__PORT=8080 \
    STATEKEEPER__LOG__FORMAT=json
EXPOSE 8080
ENTRYPOINT ["statekeeper"]
CMD ["serve"]
