# The rpm service image, used by docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

# Dependencies first, from the hash-pinned lock, so that code changes rebuild quickly.
COPY requirements.lock requirements-build.lock ./
RUN pip install --no-cache-dir --no-deps --require-hashes -r requirements-build.lock -r requirements.lock \
    && pip check

COPY pyproject.toml README.md ./
COPY rpm ./rpm
COPY simulators ./simulators
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && useradd --system --no-create-home --shell /usr/sbin/nologin rpm

USER rpm
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
CMD ["rpm", "up"]
