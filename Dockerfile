# syntax=docker/dockerfile:1
# One image, three binaries: stellaops-operator (the controllers and the reports API),
# stellaops-worker (the data plane run in the Jobs, CronJobs and Deployments the operator
# creates) and kubectl-stellaops (the kubectl plugin, to copy out of the image).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The whole context at once (.dockerignore leaves out target/, .git/, .test-services/).
# Copying crate manifests one by one to cache a dependency layer broke this build each time
# a workspace member was added, and could not work anyway: cargo refuses a manifest without
# its src/lib.rs or src/main.rs, so it would also need generated stub sources (`COPY
# --parents */Cargo.toml`, stable since dockerfile 1.20, keeps paths but not that). Cache
# mounts give the same reuse with nothing to keep in step: the crate downloads and the
# target directory survive between builds on one builder, so a source edit recompiles our
# crates only. The target directory is a mount, not a layer, so the binaries are installed
# to /out in the same step.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p stellaops-operator -p stellaops-workers -p kubectl-stellaops \
 && install -D -m 0755 target/release/stellaops-operator /out/stellaops-operator \
 && install -D -m 0755 target/release/stellaops-worker /out/stellaops-worker \
 && install -D -m 0755 target/release/kubectl-stellaops /out/kubectl-stellaops

# distroless: glibc, CA certificates, no shell; runs as uid 65532. Its PATH includes
# /usr/local/bin, where the workloads' `command: [stellaops-worker]` is found.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="stellaops-operator" \
      org.opencontainers.image.source="https://github.com/stella-ops/stellaops-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
EXPOSE 8080 9443 6443
ENTRYPOINT ["/usr/local/bin/stellaops-operator"]
CMD ["run"]
