#!/usr/bin/env bash
# Build the citesearch image from the repository's Dockerfile (`make image` runs this).
#
# The builder: docker when a Docker engine answers, else buildah (no daemon; as root it runs build
# steps with chroot isolation), else podman. IMAGE_BUILDER=docker|buildah|podman picks one.
# Environment, each optional:
#   IMAGE             the tag (citesearch:latest)
#   BASE_IMAGE, TORCH_INDEX_URL, PIP_INDEX_URL
#                     build arguments; unset, the Dockerfile's defaults (python:3.11-slim, PyTorch's
#                     CPU index, PyPI)
#   IMAGE_TARGET      build only up to this stage (--target)
#   PIP_CERT          a CA bundle pip should trust (a TLS-intercepting proxy), passed as the build
#                     secret pip_cert: it is mounted for the pip steps and never stored in the image
set -euo pipefail
cd "$(dirname "$0")/.."

image=${IMAGE:-citesearch:latest}
args=()
for name in BASE_IMAGE TORCH_INDEX_URL PIP_INDEX_URL; do
    if [[ -n ${!name:-} ]]; then
        args+=(--build-arg "$name=${!name}")
    fi
done
if [[ -n ${IMAGE_TARGET:-} ]]; then
    args+=(--target "$IMAGE_TARGET")
fi
if [[ -z ${PIP_CERT:-} ]]; then  # unset: the CA bundle the host's own pip is told to trust, if any
    PIP_CERT=$(python3 -m pip config list 2>/dev/null | sed -n "s/^[^=]*\.cert='\(.*\)'\$/\1/p" | head -n 1 || true)
fi
if [[ -n ${PIP_CERT:-} && -s ${PIP_CERT:-} ]]; then
    args+=(--secret "id=pip_cert,src=$PIP_CERT")
fi

builder=${IMAGE_BUILDER:-}
if [[ -z $builder ]]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
        builder=docker
    elif command -v buildah >/dev/null; then
        builder=buildah
    elif command -v podman >/dev/null; then
        builder=podman
    else
        echo "build-image: no Docker engine, buildah or podman here (apt-get install buildah)" >&2
        exit 2
    fi
fi

echo "build-image: $builder, tag $image${args[*]:+, ${args[*]}}" >&2
case $builder in
    docker)
        # The --mount=type=secret steps need BuildKit (the default builder since Docker 23).
        DOCKER_BUILDKIT=1 exec docker build -t "$image" "${args[@]}" .
        ;;
    buildah)
        # docker format: the OCI format has no HEALTHCHECK. --layers: unchanged steps are reused.
        exec buildah bud --isolation "${BUILDAH_ISOLATION:-chroot}" --layers --format docker \
            -t "$image" "${args[@]}" .
        ;;
    podman)
        exec podman build --layers --format docker -t "$image" "${args[@]}" .
        ;;
    *)
        echo "build-image: IMAGE_BUILDER=$builder: expected docker, buildah or podman" >&2
        exit 2
        ;;
esac
