# syntax=docker/dockerfile:1
# One image, two binaries: stellaops-operator (the controllers) and stellaops-worker (the
# data plane run in the Jobs, CronJobs and Deployments the operator creates).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY crds/Cargo.toml crds/
COPY controllers/Cargo.toml controllers/
COPY workers/Cargo.toml workers/
COPY admission-webhook/Cargo.toml admission-webhook/
COPY operator/Cargo.toml operator/
COPY store/Cargo.toml store/
COPY testing/Cargo.toml testing/
RUN cargo fetch --locked
COPY . .
RUN cargo build --release --locked -p stellaops-operator -p stellaops-workers \
 && install -D -m 0755 target/release/stellaops-operator /out/stellaops-operator \
 && install -D -m 0755 target/release/stellaops-worker /out/stellaops-worker

# distroless: glibc, CA certificates, no shell; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="stellaops-operator" \
      org.opencontainers.image.source="https://github.com/stella-ops/stellaops-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
EXPOSE 8080 9443
ENTRYPOINT ["/usr/local/bin/stellaops-operator"]
CMD ["run"]
