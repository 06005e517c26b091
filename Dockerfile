# syntax=docker/dockerfile:1
#
# CPU image (default):
#   docker build -t marquee .
#   docker run -p 8080:8080 -v marquee-data:/data -v /path/to/posters:/catalog:ro marquee
#
# CUDA image: a CUDA + cuDNN runtime base, and onnxruntime-node's CUDA 12 binaries:
#   docker build -t marquee:cuda \
#     --build-arg RUNTIME_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04 \
#     --build-arg ORT_INSTALL=cuda12 .
#   docker run --gpus all -e MARQUEE_DEVICE=cuda -p 8080:8080 -v marquee-data:/data marquee:cuda
#
# The image carries the Python training environment (training/requirements.lock, about 5 GB),
# which exports the base model on first start and runs retraining. With a model exported
# elsewhere (MARQUEE_BASE_MODEL), or serving the shipped default model (models/default, no
# Python needed), build with --build-arg WITH_PYTHON=0 for a small image.
#
# torchvision's ImageNet ResNet-50 weights are baked in (fetched at build time and checked as
# the server checks them); --build-arg WITH_WEIGHTS=0 skips that, and the first start then
# fetches them itself, or falls back to the shipped default model when it cannot.

ARG NODE_IMAGE=node:22-bookworm-slim
ARG RUNTIME_IMAGE=node:22-bookworm-slim

# ---- Node dependencies and the compiled server --------------------------------------------
FROM ${NODE_IMAGE} AS build
ARG ORT_INSTALL=skip
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# `npm ci` runs the package's install script, which builds the native graph walk (binding.gyp, with
# g++ and Node's own headers), and its prepare script, which compiles src/ with tsconfig.json: all come first.
# scripts/docker-build-replay.sh replays this stage outside Docker, as a stage of scripts/test.sh.
COPY package.json package-lock.json .npmrc tsconfig.json binding.gyp ./
COPY scripts/build-native.mjs ./scripts/build-native.mjs
COPY src ./src
# onnxruntime-node's installer only fetches the CUDA binaries (the CPU ones are in its package). It
# reads ONNXRUNTIME_NODE_INSTALL first: skipped in `npm ci` whatever npm's version, then run on its
# own for a CUDA build (ORT_INSTALL=cuda12).
RUN --mount=type=cache,target=/root/.npm \
    ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --ignore-scripts=false
RUN if [ "$ORT_INSTALL" != "skip" ]; then \
      ONNXRUNTIME_NODE_INSTALL="$ORT_INSTALL" node node_modules/onnxruntime-node/script/install.js; \
    fi
RUN test -f dist/cli.js && npm prune --omit=dev

# ---- Runtime --------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
ARG WITH_PYTHON=1
ARG WITH_WEIGHTS=1
# A CUDA base image has no Node.js: bring the build stage's (glibc builds run on both bases).
COPY --from=build /usr/local/bin/node /usr/local/bin/node
RUN (id -u marquee >/dev/null 2>&1 || useradd --system --uid 10001 --create-home marquee) \
    && mkdir -p /data /catalog && chown marquee /data
WORKDIR /app
# jemalloc hands memory back to the system: with glibc's malloc a model swap's peak (two models in memory while
# requests finish on the old one) stays in the process for good (bench/results/soak.md).
# tini runs as PID 1 (ENTRYPOINT below): it reaps orphaned processes, such as a killed training run's
# DataLoader workers, which Node as PID 1 never waits for, and passes signals on to Node.
RUN apt-get update && apt-get install -y --no-install-recommends libjemalloc2 tini && rm -rf /var/lib/apt/lists/* \
    && ln -s "$(find /usr/lib -name libjemalloc.so.2 | head -n 1)" /usr/local/lib/libjemalloc.so.2
# The venv is made here, against this image's own python3 (3.11 on the default base).
COPY training/requirements.lock ./training/requirements.lock
COPY scripts/python-env.sh ./scripts/python-env.sh
RUN if [ "$WITH_PYTHON" = "1" ]; then \
      apt-get update && apt-get install -y --no-install-recommends python3 python3-venv libgomp1 \
      && rm -rf /var/lib/apt/lists/* \
      && MARQUEE_VENV=/opt/venv bash scripts/python-env.sh; \
    fi
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/build/Release/graph_walk.node ./build/Release/graph_walk.node
COPY package.json ./
COPY bin ./bin
COPY migrations ./migrations
COPY openapi ./openapi
COPY public ./public
COPY training ./training
COPY scripts ./scripts
COPY models ./models
RUN if [ "$WITH_WEIGHTS" = "1" ]; then \
      node -e "import('./dist/model/weights.js').then((w) => w.fetchWeights({ ref: w.TORCHVISION_RESNET50_URL, sha256: null }, '/opt/marquee-weights', { connectTimeoutMs: 30000 })).then((v) => console.log('weights', v.path, v.sha256))"; \
    fi

ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    MARQUEE_DATA_DIR=/data \
    MARQUEE_CATALOG=/catalog \
    MARQUEE_VENV=/opt/venv \
    MARQUEE_WEIGHTS_DIR=/opt/marquee-weights \
    MARQUEE_PYTHON=/opt/venv/bin/python \
    LD_PRELOAD=/usr/local/lib/libjemalloc.so.2
VOLUME ["/data"]
EXPOSE 8080
USER marquee
# Liveness: /health answers while the process does. Readiness is /ready (503 until a model and its
# index are loaded, and during a first start's embedding): an orchestrator routes traffic on it
# (Kubernetes: readinessProbe /ready, livenessProbe /health). Docker's one health check stays on
# liveness, so that a long first start is not taken for a dead container.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "bin/marquee.js", "serve"]
