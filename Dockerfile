# trtllm-gateway on NVIDIA's TensorRT-LLM release image.
#
#   docker build -t trtllm-gateway .
#   docker run --gpus all --ipc host -v /models:/models -p 8000:8000 trtllm-gateway
#
# TensorRT-LLM 1.2.1: the image ships tensorrt_llm with the LLM API, whose default backend
# (PyTorch) serves Hugging Face checkpoints, together with the CUDA, TensorRT, torch, MPI and
# NCCL builds it was tested with. 1.2.x is the last release that still has the TensorRT-engine
# backend (`tensorrt_llm._tensorrt_engine.LLM`), so one image serves all three Llama configs in
# config/, the prebuilt engine included.
FROM nvcr.io/nvidia/tensorrt-llm/release:1.2.1

# A fixed UID clear of host users and of the base image's own (Ubuntu 24.04 images have 1000),
# numeric in USER below so that Kubernetes can check runAsNonRoot. The home directory is where
# TensorRT-LLM's kernel caches go.
RUN groupadd --gid 10001 gateway \
    && useradd --no-log-init --uid 10001 --gid gateway --create-home gateway

WORKDIR /opt/trtllm-gateway

# Dependencies first, from pyproject.toml alone, so that a source change leaves this layer
# cached. Not the `embedded` extra: the image brings its own torch. Every package the image
# already has is held at its version, so tensorrt_llm keeps exactly what it was released
# with; a gateway requirement those versions cannot meet fails the build here, not at run time.
COPY pyproject.toml ./
RUN python3 -m pip list --format=freeze > image-constraints.txt \
    && python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' > requirements.txt \
    && python3 -m pip install --no-cache-dir --constraint image-constraints.txt --requirement requirements.txt

# The gateway itself; README.md is the package's long description.
COPY README.md ./
COPY gateway ./gateway
COPY engines ./engines
RUN python3 -m pip install --no-cache-dir --no-deps .

COPY config/llama-3.1-8b-*.yaml /app/config/

# The config file is chosen at run time (-e GATEWAY_CONFIG=/app/config/...). The address is
# set here rather than in the configs: these variables win over the YAML file, and the
# healthcheck reads the port from GATEWAY_PORT too.
ENV GATEWAY_CONFIG=/app/config/llama-3.1-8b-fp8-h100.yaml \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8000 \
    PYTHONUNBUFFERED=1

USER 10001:10001
EXPOSE 8000

# python3, not curl: the image is certain to have the interpreter tensorrt_llm runs on. The
# server only listens once the model is loaded, which can take minutes: hence the start period.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15m --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GATEWAY_PORT', '8000') + '/health', timeout=4)"]

# No ENTRYPOINT: NVIDIA's (inherited) checks the driver, then execs this command.
CMD ["trtllm-gateway", "serve"]
