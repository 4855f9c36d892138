# The modelsync operator on Debian bookworm with Debian's python3 (3.11). The same inputs as
# the local builder (testcluster/operator_image.py), which builds this image without Docker:
# the packages of images/operator/packages.txt, a venv at /venv with images/operator/
# requirements.lock (hashes checked), and our own wheel in the last layer, so a change to
# the code rebuilds only that one.
# kustomize and helm, standalone, from the wrapper modules that pin them (go.mod + go.sum).
FROM golang:1.26-bookworm AS renderers
COPY testcluster/renderer_modules /modules
RUN cd /modules/kustomize && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" \
       -o /out/kustomize sigs.k8s.io/kustomize/kustomize/v5 \
    && cd /modules/helm && CGO_ENABLED=0 go build -trimpath \
       -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=v4.3.1" \
       -o /out/helm helm.sh/helm/v4/cmd/helm

FROM debian:bookworm-slim AS build
COPY images/operator/packages.txt /tmp/packages.txt
RUN apt-get update \
    && sed -e 's/#.*//' /tmp/packages.txt | xargs apt-get install -y --no-install-recommends \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
COPY crds ./crds
RUN python3 -m venv /build && /build/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM debian:bookworm-slim
COPY images/operator/packages.txt /tmp/packages.txt
RUN apt-get update \
    && sed -e 's/#.*//' /tmp/packages.txt | xargs apt-get install -y --no-install-recommends \
    && rm -rf /var/lib/apt/lists/* /tmp/packages.txt
COPY images/operator/requirements.lock /tmp/requirements.lock
RUN python3 -m venv /venv \
    && /venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps \
       --require-hashes --only-binary=:all: -r /tmp/requirements.lock \
    && rm /tmp/requirements.lock \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /var/cache/modelsync \
       --shell /usr/sbin/nologin modelsync \
    && mkdir -p /var/cache/modelsync && chown 10001:10001 /var/cache/modelsync \
    && chmod 0700 /var/cache/modelsync
COPY --from=renderers /out/kustomize /out/helm /usr/local/bin/
COPY --from=build /wheels /tmp/wheels
RUN /venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-index --no-deps \
       /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels
# Numeric, as the chart's podSecurityContext (runAsUser: 10001) and runAsNonRoot want.
USER 10001:10001
# HOME is the chart's git-cache emptyDir: with a read-only root it and /tmp are the only
# writable places.
ENV PATH=/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/var/cache/modelsync \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LANG=C.UTF-8
EXPOSE 8080
ENTRYPOINT ["/venv/bin/modelsync"]
CMD ["run"]
