#!/usr/bin/env bash
# The benchmark tables on a GPU machine: the same commands as on the CPU, with TensorFlow's and ONNX Runtime's
# CUDA builds. (The 2-core development machine has no GPU, so this has not been run there.)
#
#   bash benchmarks/gpu.sh [N]        # N files per corpus, default 1000
#
# Makes .venv-gpu, prints the GPU, the runtime table at batch 32 and 256, then starts a private stack
# (`python -m deploy.run`, as `make run` does: its own RADBATCH_HOME, ports and Redis) and prints the
# throughput tables of the 128, 1024 and dicom corpora against it; stops the stack at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
VENV=.venv-gpu

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
grep -v -E '^(tensorflow|onnxruntime)' requirements.txt > "$VENV/requirements-gpu.txt"
"$VENV/bin/pip" install -q -r "$VENV/requirements-gpu.txt" 'tensorflow[and-cuda]==2.21.0' 'onnxruntime-gpu>=1.20'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
echo "CPU cores: $(nproc)"

RADBATCH_HOME=$(mktemp -d /tmp/radbatch-gpu.XXXXXX)
export RADBATCH_HOME RADBATCH_PORT=5791 RADBATCH_REDIS_PORT=6791 RADBATCH_WORKER_METRICS_PORT=9791
export RADBATCH_ADMIN_TOKEN=gpu-bench TF_FORCE_GPU_ALLOW_GROWTH=true TF_CPP_MIN_LOG_LEVEL=2
export RADBATCH_DECODE_THREADS="${RADBATCH_DECODE_THREADS:-$(nproc)}"

"$VENV/bin/python" -m benchmarks.runtimes --batch-size 32
"$VENV/bin/python" -m benchmarks.runtimes --batch-size 256

"$VENV/bin/python" -m db.setup > /dev/null
"$VENV/bin/python" -m deploy.run > "$RADBATCH_HOME/run.log" 2>&1 &
STACK=$!
trap 'kill "$STACK" 2>/dev/null; wait "$STACK" 2>/dev/null || true' EXIT
"$VENV/bin/python" - <<'PY'
import os, time, requests
url = f"http://127.0.0.1:{os.environ['RADBATCH_PORT']}/readyz"
deadline = time.time() + 600
while time.time() < deadline:
    try:
        if requests.get(url, timeout=2).status_code == 200:
            raise SystemExit(0)
    except requests.RequestException:
        pass
    time.sleep(2)
raise SystemExit(f"the stack was not ready after 600 s; see {os.environ['RADBATCH_HOME']}/run.log")
PY
"$VENV/bin/python" -m benchmarks.throughput --token gpu-bench --n "$N" --corpus 128,1024,dicom
