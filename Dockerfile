# Build stage: compile the release binary, then gather the runtime's whole root file system:
# the binary, the shared libraries it links (as ldd lists them), the certificate authorities
# rediss:// checks a managed Redis against, the settings file, and a passwd entry for the
# non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked && strip target/release/statekeeper
COPY config /rootfs/app/config
RUN set -eu; \
    mkdir -p /rootfs/usr/local/bin /rootfs/etc/ssl/certs /rootfs/tmp; \
    chmod 1777 /rootfs/tmp; \
    cp target/release/statekeeper /rootfs/usr/local/bin/; \
    for lib in $(ldd target/release/statekeeper | grep -o '/[^ ]*'); do \
        cp --parents -L "$lib" /rootfs/; \
    done; \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/; \
    echo 'statekeeper:x:10001:10001:statekeeper:/app:/nonexistent' > /rootfs/etc/passwd; \
    echo 'statekeeper:x:10001:' > /rootfs/etc/group

# Runtime: nothing but that root. No shell, no package manager; runs as uid 10001.
FROM scratch
COPY --from=build /rootfs /
WORKDIR /app
USER 10001:10001
ENV STATEKEEPER__SERVER__HOST=0.0.0.0 \
    STATEKEEPER__SERVER__PORT=8080 \
    STATEKEEPER__LOG__FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=2s --timeout=3s --start-period=2s --retries=15 \
    CMD ["statekeeper", "healthcheck"]
ENTRYPOINT ["statekeeper"]
CMD ["serve"]
