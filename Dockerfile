# syntax=docker/dockerfile:1
# One image for `wabaplane operator`, `wabaplane gateway` and `wabaplane emulator` (the chart passes
# the command as the first argument). The first stage builds wheels for wabaplane and every
# dependency; the second installs them offline and runs as an unprivileged user.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hack/etcd ./hack/etcd
COPY hack/kube ./hack/kube
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
RUN groupadd --gid 10001 wabaplane \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin wabaplane
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels wabaplane && rm -rf /wheels
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Numeric, so that Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["wabaplane"]
CMD ["--help"]
