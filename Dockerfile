# Light My Cells inference container: a Grand-Challenge algorithm (no arguments: /input ->
# /output) and a batch tool (docker run ... --input IN --output OUT). linux/amd64; build with
# ./build.sh. CUDA 13 + cuDNN 9 runtime so that onnxruntime-gpu's CUDA provider loads; without
# a GPU it runs on the CPU and says so. Needs no network at run time (weights are baked in).
FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Ubuntu's python3 (3.12) and tini; versions float with the base image's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv tini \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv "$VIRTUAL_ENV" \
    && useradd --create-home --no-log-init --uid 10001 --user-group user

WORKDIR /opt/app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY lightmycells/ ./lightmycells/
COPY inference.py process.py ./
COPY weights/ ./weights/

USER 10001:10001

# tini as PID 1 forwards `docker stop`'s SIGTERM to python and reaps children: python as
# PID 1 would get no default signal actions from the kernel. inference.py rolls back the
# image in progress on SIGTERM and exits 143 (docs/CONTAINER.md).
ENTRYPOINT ["/usr/bin/tini", "--", "python", "inference.py"]
