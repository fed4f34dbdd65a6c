# geo-sync image: one image, every role (primary serve, secondary run, worker).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/geo-sync
COPY requirements.lock pyproject.toml README.md ./
# The runtime lock only: the test and lint tools of the dev lock stay out of production.
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY geo_sync ./geo_sync
COPY replicators ./replicators
COPY verification ./verification
RUN pip install --no-cache-dir --no-deps .
RUN useradd --system --create-home geo
USER geo
ENTRYPOINT ["geo-sync"]
