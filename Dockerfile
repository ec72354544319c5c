# Build stage: compile the release binary, then gather the runtime's whole root file system:
# the binary, the shared libraries it links (as ldd lists them), the certificate authorities
# rediss:// checks a managed Redis against, the settings file, and a passwd entry for the
# non-root user.
FROM rust:1-bookworm AS build
# One COPY and one RUN: with a copy-on-write-less storage driver (vfs) every layer is a whole
# copy of the file system, so the stage keeps to two layers over the base, and the RUN removes
# the build's target directory and crate sources before its layer is written. The context is
# what .dockerignore lets through: the manifest, the lock file, src/ and config/.
COPY . /src
RUN set -eu; \
    cd /src; \
    cargo build --release --locked; \
    strip target/release/statekeeper; \
    mkdir -p /rootfs/usr/local/bin /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/app; \
    chmod 1777 /rootfs/tmp; \
    cp -r config /rootfs/app/config; \
    cp target/release/statekeeper /rootfs/usr/local/bin/; \
    for lib in $(ldd target/release/statekeeper | grep -o '/[^ ]*'); do \
        cp --parents -L "$lib" /rootfs/; \
    done; \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/; \
    echo 'statekeeper:x:10001:10001:statekeeper:/app:/nonexistent' > /rootfs/etc/passwd; \
    echo 'statekeeper:x:10001:' > /rootfs/etc/group; \
    rm -rf target "${CARGO_HOME:-/usr/local/cargo}/registry" "${CARGO_HOME:-/usr/local/cargo}/git"

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
