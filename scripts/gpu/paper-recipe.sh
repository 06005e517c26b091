#!/usr/bin/env bash
# The paper recipe (ResNet-50, full network, from a random start) with the genre head and the teacher
# (nsfwjs's InceptionV3 at mixed3, weight 0.2) on the whole catalog, on one GPU; then int8 and the int8
# model's genre head. What docs/evaluation/gpu-paper.md reports was made by this script, run from the repo
# root on a GPU machine with torch, Lightning and onnxruntime in `python3`, beside these files in .gpu/:
#   img.tar.xz          scripts/gpu/pack-inputs.mjs's img/ folder (tar | xz)
#   manifest.jsonl.gz   its manifest
#   nsfwjs.tar.xz       node_modules/nsfwjs's package.json and dist/models/inception_v3 (the teacher)
#   whl/                wheels of what that python3 lacks (pytorch-metric-learning==2.9.0)
# Making .gpu/ on the machine that has the catalog (Node, npm install and the training venv done):
#   export MARQUEE_DATA_DIR=/tmp/gpu-data
#   node bin/marquee.js import ../shared/posters && node bin/marquee.js manifest /tmp/gpu-160x240.jsonl 160x240
#   node scripts/gpu/pack-inputs.mjs /tmp/gpu-160x240.jsonl .gpu
#   (cd .gpu && tar -cf - img | xz -1 > img.tar.xz && rm -r img && gzip -9 manifest.jsonl)
#   tar -C node_modules/nsfwjs -cf - package.json dist/models/inception_v3 | xz -6 > .gpu/nsfwjs.tar.xz
#   .venv/bin/python -m pip download --no-deps -d .gpu/whl pytorch-metric-learning==2.9.0
# Usage: OUT=dir bash scripts/gpu/paper-recipe.sh [EPOCHS] [DEVICE] [MAX_TRAIN_SECONDS]
# Environment: TEACHER= (empty) trains without the teacher; SKIP_INT8=1 stops after the float32 model;
# PY (default python3); MANIFEST (default .gpu/manifest.jsonl.gz); EXTRA (more `training train` flags).
# Writes $OUT/log.txt, $OUT/train-events.jsonl (each event line prefixed by its Unix time), $OUT/small.tgz
# (model.json, metrics.json of both models) and the int8 model.onnx in 15 MB parts ($OUT/int8-onnx.part-*).
set -uo pipefail
EPOCHS=${1:-20}; DEV=${2:-cuda}; MAXTRAIN=${3:-420}
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
OUT=${OUT:?set OUT to the output folder}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
if [[ -d .gpu/whl ]] && ! $PY -c 'import pytorch_metric_learning' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
tar -C .gpu -xJf .gpu/img.tar.xz
mkdir -p /tmp/nsfwjs && tar -C /tmp/nsfwjs -xJf .gpu/nsfwjs.tar.xz && export MARQUEE_NSFWJS=/tmp/nsfwjs
export MARQUEE_CACHE=/tmp/mq-cache
zcat -f ${MANIFEST:-.gpu/manifest.jsonl.gz} | sed "s#@ROOT@#$PWD/.gpu#g" > /tmp/m.jsonl
LOG=$OUT/log.txt
{ echo "== $(date -u) host $(hostname)"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1; lscpu | grep -E '^(Model name|CPU\(s\))'
  $PY -c "import torch,torchvision,lightning,onnxruntime; print('torch',torch.__version__,'tv',torchvision.__version__,'lightning',lightning.__version__,'ort',onnxruntime.__version__)"; wc -l /tmp/m.jsonl; } >> $LOG 2>&1
stamp() { $PY -u -c "import sys,time
for l in sys.stdin: print(f'{time.time():.2f} {l}', end='', flush=True)"; }
rm -rf /tmp/paper-teacher /tmp/paper-int8
echo "== train start at $(el) s" >> $LOG
timeout $MAXTRAIN $PY -m training train --manifest /tmp/m.jsonl --out /tmp/paper-teacher --recipe paper \
  --width 160 --height 240 --seed 0 --device $DEV --epochs $EPOCHS ${TEACHER---teacher-layer mixed3 --teacher-weight 0.2} \
  ${EXTRA:-} 2>> $LOG | stamp > $OUT/train-events.jsonl
echo "== train rc ${PIPESTATUS[0]} at $(el) s" >> $LOG
if [[ -z "${SKIP_INT8:-}" && -f /tmp/paper-teacher/model.onnx ]]; then
  ls -la /tmp/paper-teacher >> $LOG
  timeout 150 $PY -m training quantize --model /tmp/paper-teacher --manifest /tmp/m.jsonl --out /tmp/paper-int8 \
    --calibrate 256 --check 721 >> $LOG 2>&1
  echo "== quantize rc $? at $(el) s" >> $LOG
fi
if [[ -f /tmp/paper-int8/model.onnx ]]; then
  timeout 120 $PY -m training fit-head --model /tmp/paper-int8 --manifest /tmp/m.jsonl >> $LOG 2>&1
  echo "== fit-head (int8) rc $? at $(el) s" >> $LOG
  sha256sum /tmp/paper-int8/model.onnx /tmp/paper-teacher/model.onnx >> $LOG
  split -b 15000000 /tmp/paper-int8/model.onnx $OUT/int8-onnx.part-
fi
tar czf $OUT/small.tgz -C /tmp $(cd /tmp && ls -d paper-teacher/*.json paper-int8/*.json paper-int8/*.md paper-teacher/*.md 2>/dev/null) 2>> $LOG
echo "== done at $(el) s" >> $LOG
