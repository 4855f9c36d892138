# The modelsync operator. Multi-stage: a wheel is built with the toolchain, the runtime
# image has only Python, git (the operator shells out to it) and the wheel's deps.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
COPY crds ./crds
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /var/cache/modelsync modelsync
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001:10001
ENV HOME=/var/cache/modelsync PYTHONUNBUFFERED=1
EXPOSE 8080
ENTRYPOINT ["modelsync"]
CMD ["run"]
