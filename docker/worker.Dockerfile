# The panopipe worker of AWS Batch on Fargate and Fargate Spot: `panopipe worker run` runs one chunk of a
# manifest (see docs/architecture.md). x86_64 only: Fargate Spot has no ARM64 capacity.
#
# Build from the repository root (no Docker engine is needed anywhere else in panopipe):
#   docker build --platform linux/amd64 -f docker/worker.Dockerfile -t panopipe-worker:0.1.0 .
#
# Size budget: <= 350 MB as pushed to ECR (compressed layers, what Fargate pulls at every task start).
# Unpacked it is ~480 MB, measured from the installed packages: python:3.12-slim ~125, OpenCV (headless)
# ~175, numpy ~75, botocore ~30, SQLAlchemy ~30, Pillow ~22, psycopg ~12, the rest ~10.
# Compressed, the dependencies' wheels (CPython 3.12, x86_64) are 118 MB: at most ~245 MB pushed with the base.
# Check after a build: docker image inspect panopipe-worker:0.1.0 --format '{{.Size}}'
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# No compiler in the image (no build tools): the optional C extension, the SQLite -> PostgreSQL copy that
# workers never use, is skipped with one line and panopipe installs pure Python over the binary wheels.
COPY pyproject.toml setup.py README.md LICENSE /tmp/panopipe/
COPY src /tmp/panopipe/src
RUN pip install /tmp/panopipe \
    && rm -rf /tmp/panopipe \
    && useradd --create-home --uid 1000 worker

USER 1000:1000
WORKDIR /home/worker
# The job definition's command; the batch executor adds PANOPIPE_MANIFEST and Batch AWS_BATCH_JOB_ARRAY_INDEX.
# SIGTERM reaches panopipe as PID 1, which handles it (finish or abandon the running jobs, exit 143).
CMD ["panopipe", "worker", "run"]
