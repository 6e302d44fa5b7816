# patchreg: one image for the API, the workers and one-off commands (entrypoint `patchreg`).
#
#   docker build -t patchreg .                                    # CUDA torch, for GPU workers
#   docker build -t patchreg:cpu \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .   # CPU-only torch, smaller
#
# torch is installed first, from the wheel index the build argument names, within the range that
# pyproject.toml allows; `pip install .` then finds it satisfied and leaves it alone.
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG TORCH_REQUIREMENT="torch>=2.3,<2.14"
# Match the owner of bind-mounted or NFS artifact directories on the hosts, if you use them.
ARG PATCHREG_UID=10001

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATCHREG_HOME=/data/home \
    PATCHREG_STORE=/data/artifacts \
    HF_HOME=/data/home/huggingface

RUN groupadd --system --gid "${PATCHREG_UID}" patchreg \
    && useradd --system --uid "${PATCHREG_UID}" --gid patchreg --home-dir /data/home \
        --shell /usr/sbin/nologin patchreg \
    && mkdir -p /data/home /data/artifacts /models \
    && chown -R patchreg:patchreg /data

# A range, not a pin: the same one as pyproject.toml, so `pip install .` keeps this torch.
# hadolint ignore=DL3013
RUN pip install --index-url "${TORCH_INDEX_URL}" "${TORCH_REQUIREMENT}"

WORKDIR /opt/patchreg
COPY pyproject.toml README.md ./
COPY core ./core
COPY registry ./registry
COPY trainer ./trainer
COPY worker ./worker
COPY cli ./cli
COPY client ./client
COPY migrations ./migrations
RUN pip install ".[ml,s3]" \
    && patchreg --version \
    && python -c "import torch; print('torch', torch.__version__)"

USER ${PATCHREG_UID}:${PATCHREG_UID}
WORKDIR /data/home
ENTRYPOINT ["patchreg"]
CMD ["--help"]
