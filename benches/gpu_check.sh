#!/usr/bin/env bash
# The one command that proves convlab's CUDA backend on a GPU machine.
#
#   bash benches/gpu_check.sh                         # on the GPU machine, from anywhere
#   GPU_CHECK_DRY_RUN=1 bash benches/gpu_check.sh     # anywhere, no GPU (see "dry run" below)
#
# Steps, in order. Each is timed and logged to $OUT/logs/<step>.log; a step that fails is
# recorded and the next one runs anyway; the summary at the end (also $OUT/summary.txt)
# lists every step's status and seconds. The exit status is 0 only if every step is ok.
#
#   env        nvidia-smi, nvcc --version, compute-sanitizer, python / torch / cupy versions
#   build      pip install . with CONVLAB_CUDA=ON for sm_90 (the full log: logs/build.log)
#   info       python -m convlab info, which must say CUDA is available; copies the build's
#              ptxas report (cuda_resources.txt: registers, spills, shared memory per kernel)
#   pytest     the tests marked cuda (ok only if some ran and none failed)
#   memcheck   compute-sanitizer --tool memcheck over benches/gpu_sanitize.py
#   racecheck  compute-sanitizer --tool racecheck over the same
#   bench      benches/gpu_bench.py -> $OUT/gpu_results.md and $OUT/gpu_results.json
#
# Time: the whole run keeps within GPU_CHECK_BUDGET_S seconds (default 470, under 8
# minutes). Each step runs under `timeout`: its own cap (build 300, pytest 240, each
# sanitizer 120, bench 200 s), shortened when needed so that the steps after it keep their
# minimum; a step whose minimum no longer fits is "SKIPPED (time budget)". The bench writes
# its table after every row, so a cut bench still leaves its rows.
#
# Environment: OUT (default ./gpu-check-out under the repository root), PYTHON (default
# python, else python3), GPU_CHECK_BUDGET_S, GPU_BENCH_ARGS (extra arguments for gpu_bench.py, e.g.
# "--kernels conv2d --no-model"), CONVLAB_COMMIT (recorded in the results; the machine's
# copy of the tree has no .git), GPU_CHECK_DRY_RUN=1.
#
# Dry run: no build, no nvidia-smi, no pytest, no compute-sanitizer. It uses whatever
# convlab imports (PYTHONPATH), runs benches/gpu_sanitize.py --host (the same calls on the
# CPU through the host executor) in place of memcheck and --plan in place of racecheck, and
# gpu_bench.py --dry-run (fake times). tests/test_gpu_check.py runs it.

set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
ROOT=$PWD
# shellcheck source=benches/gpu_check_lib.sh
source "$ROOT/benches/gpu_check_lib.sh" || exit 2
OUT=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$OUT/logs" || exit 2
OUT=$(cd "$OUT" && pwd)
LOGS=$OUT/logs
PY=${PYTHON:-$(command -v python || command -v python3 || echo python)}
DRY=${GPU_CHECK_DRY_RUN:-0}
BUDGET=${GPU_CHECK_BUDGET_S:-470}
BENCH_ARGS=${GPU_BENCH_ARGS:-}
START=$(date +%s)
DEADLINE=$((START + BUDGET))
RC=0
DT=0
STEP_LIMIT=0
: > "$OUT/gpu_check.log"

# name:cap:minimum seconds, in run order. The minimum is what a step needs to be worth
# starting; the later steps' minimums are kept free when a step's timeout is chosen.
STEPS=(env:60:10 build:300:60 info:60:5 pytest:240:60 memcheck:120:40 racecheck:120:40 bench:200:90)
COLLECT_RESERVE=10

SUMMARY_NAMES=()
SUMMARY_STATUS=()
SUMMARY_SECONDS=()
SUMMARY_DETAIL=()

now() { date +%s; }
say() { printf '[gpu_check +%3ds] %s\n' "$(( $(now) - START ))" "$*" | tee -a "$OUT/gpu_check.log"; }

record() {  # name status seconds detail
  SUMMARY_NAMES+=("$1"); SUMMARY_STATUS+=("$2"); SUMMARY_SECONDS+=("$3"); SUMMARY_DETAIL+=("$4")
  say "-- $1: $2 (${3}s) $4"
}

# run_step NAME COMMAND...: runs COMMAND under the step's timeout, output to logs/NAME.log.
# Sets RC (124/137: timed out; 200: skipped for time) and DT (seconds).
run_step() {
  local name=$1; shift
  local t; t=$(step_timeout "$name")
  DT=0
  if [[ $t == skip:* ]]; then
    RC=200
    say "== $name: skipped, ${t#skip:}s left for it" | tee "$LOGS/$name.log"
    return
  fi
  say "== $name (timeout ${t}s): $*"
  local t0; t0=$(now)
  timeout --kill-after=10 "$t" "$@" > "$LOGS/$name.log" 2>&1
  RC=$?
  DT=$(( $(now) - t0 ))
  STEP_LIMIT=$t
}

base_status() { exit_verdict "$RC" "$STEP_LIMIT"; }

show_tail() {  # log lines
  echo "---- last $2 lines of $1 ----"
  tail -n "$2" "$1" 2>/dev/null
  echo "----"
}

# nvcc (for CMake) and compute-sanitizer may be installed but off PATH.
if ! command -v nvcc > /dev/null 2>&1; then
  for dir in /usr/local/cuda/bin /usr/local/cuda*/bin; do
    if [[ -x $dir/nvcc ]]; then export PATH="$dir:$PATH"; break; fi
  done
fi

say "convlab GPU check in $ROOT, outputs in $OUT, budget ${BUDGET}s, dry run: $DRY"

# ---------------------------------------------------------------------------- env
env_report() {
  local failed=""
  echo "## date"; date -u
  echo "## host"; uname -a; echo "cpus: $(nproc)"; free -g 2>/dev/null | head -2; df -h . | tail -1
  if [[ ${GPU_CHECK_DRY_RUN:-0} != 1 ]]; then
    echo "## nvidia-smi"; nvidia-smi || failed+=" nvidia-smi"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit \
      --format=csv || true
    nvidia-smi -q -d CLOCK,PERFORMANCE 2>/dev/null | head -60 || true
    echo "## nvcc"; command -v nvcc && nvcc --version || failed+=" nvcc"
    echo "## compute-sanitizer"
    local cs; cs=$(find_sanitizer) && { echo "$cs"; "$cs" --version; } || failed+=" compute-sanitizer"
  fi
  echo "## python"; command -v "$PY"; "$PY" -c "import sys; print(sys.version)" || failed+=" python"
  "$PY" -c "import numpy; print('numpy', numpy.__version__)" || failed+=" numpy"
  "$PY" -c "
import torch
print('torch', torch.__version__, '| CUDA', torch.version.cuda, '| cuDNN', torch.backends.cudnn.version(),
      '| cuda available', torch.cuda.is_available())
if torch.cuda.is_available():
    print('device', torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
" || failed+=" torch"
  if [[ ${GPU_CHECK_DRY_RUN:-0} != 1 ]]; then
    "$PY" -c "
import cupy
print('cupy', cupy.__version__, '| runtime', cupy.cuda.runtime.runtimeGetVersion(),
      '| driver', cupy.cuda.runtime.driverGetVersion(), '| devices', cupy.cuda.runtime.getDeviceCount())
cupy.show_config()
" || failed+=" cupy"
  fi
  "$PY" -m pip list 2>/dev/null | grep -i -E '^(torch|cupy[-a-z0-9]*|numpy|pybind11|scikit-build-core|cmake|ninja|pytest|pytest-benchmark|pillow) ' || true
  "$PY" "$ROOT/benches/gpu_bench.py" --source-digest | sed 's/^/source digest: /'
  if [[ -n $failed ]]; then echo "MISSING:$failed"; return 1; fi
}
export -f env_report find_sanitizer
export PY ROOT GPU_CHECK_DRY_RUN="$DRY"
run_step env bash -c env_report
status=$(base_status)
detail=$(grep -E '^(torch [0-9]|cupy [0-9]|device |source digest|MISSING)' "$LOGS/env.log" 2>/dev/null | tr '\n' ';' | cut -c1-240)
record env "$status" "$DT" "$detail"
[[ $status == ok ]] || show_tail "$LOGS/env.log" 30

# ---------------------------------------------------------------------------- build
if [[ $DRY == 1 ]]; then
  record build "SKIPPED (dry run)" 0 "using convlab from: $("$PY" -c 'import convlab, os; print(os.path.dirname(convlab.__file__))' 2>&1 | tail -1)"
else
  run_step build env CMAKE_ARGS="-DCONVLAB_CUDA_ARCHITECTURES=90" CMAKE_BUILD_PARALLEL_LEVEL=16 \
    CONVLAB_CUDA=ON PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_BREAK_SYSTEM_PACKAGES=1 \
    "$PY" -m pip install --no-build-isolation --no-deps -v .
  status=$(base_status)
  record build "$status" "$DT" "$(grep -E 'Successfully installed|building convlab._cuda' "$LOGS/build.log" | tail -2 | tr '\n' ';' | cut -c1-200)"
  if [[ $status != ok ]]; then
    echo "---- first error lines of $LOGS/build.log ----"
    grep -n -m 25 -E 'error|Error|FAILED|fatal' "$LOGS/build.log"
    show_tail "$LOGS/build.log" 30
  fi
fi

# ---------------------------------------------------------------------------- info
convlab_info() {
  "$PY" -m convlab info || return 1
  "$PY" - "$1" <<'PYEOF' || return 1
import os, shutil, sys
import convlab
print("convlab imported from", os.path.dirname(convlab.__file__))
report = os.path.join(os.path.dirname(convlab.__file__), "cuda_resources.txt")
if os.path.exists(report):
    shutil.copy(report, os.path.join(sys.argv[1], "cuda_resources.txt"))
    print("copied", report)
status = convlab.cuda_available()
print("CUDA AVAILABLE" if status else f"CUDA NOT AVAILABLE: {status.reason}")
sys.exit(0 if status or os.environ.get("GPU_CHECK_DRY_RUN") == "1" else 1)
PYEOF
}
export -f convlab_info
run_step info bash -c 'convlab_info "$0"' "$OUT"
status=$(base_status)
record info "$status" "$DT" "$(grep -E '^CUDA( NOT)? AVAILABLE' "$LOGS/info.log" | head -1 | cut -c1-200)"
[[ $status == ok ]] || show_tail "$LOGS/info.log" 20

# ---------------------------------------------------------------------------- pytest
if [[ $DRY == 1 ]]; then
  record pytest "SKIPPED (dry run)" 0 ""
else
  # -v: one line per test as it finishes, so a run cut by its timeout still shows how far
  # it got and what failed; --durations: where the time goes, for sizing the next run.
  run_step pytest "$PY" -m pytest -m cuda -v -rfEs --durations=15 -p no:cacheprovider \
    --junitxml="$OUT/pytest-cuda.xml" tests
  status=$(pytest_verdict "$RC" "$LOGS/pytest.log" "$STEP_LIMIT")
  record pytest "$status" "$DT" "$(pytest_line "$LOGS/pytest.log")"
  if [[ $status != ok ]]; then
    echo "---- failures in $LOGS/pytest.log ----"
    grep -E ' (FAILED|ERROR)( |$)|^(FAILED|ERROR) ' "$LOGS/pytest.log" | head -30
    show_tail "$LOGS/pytest.log" 15
  fi
fi

# ---------------------------------------------------------------------------- sanitizers
sanitize() {  # tool
  local tool=$1 cs
  if [[ $DRY == 1 ]]; then
    local mode=--host; [[ $tool == racecheck ]] && mode=--plan
    run_step "$tool" "$PY" benches/gpu_sanitize.py "$mode"
    status=$(base_status)
    record "$tool" "$status (dry: gpu_sanitize.py $mode, no sanitizer)" "$DT" \
      "$(grep -E '^SANITIZE SCRIPT' "$LOGS/$tool.log" | tail -1)"
    [[ $status == ok ]] || show_tail "$LOGS/$tool.log" 20
    return
  fi
  if ! cs=$(find_sanitizer); then
    record "$tool" "FAIL (compute-sanitizer not found)" 0 "searched PATH, /usr/local/cuda*/bin, CUDA_HOME, next to nvcc"
    return
  fi
  # API errors are not reported: CuPy's and torch's probing calls make benign ones, and a
  # failed launch of convlab's raises in the script anyway. --error-exitcode tells a
  # sanitizer finding (3) from a failure of the script (1).
  run_step "$tool" "$cs" --tool "$tool" --report-api-errors no --error-exitcode 3 \
    "$PY" benches/gpu_sanitize.py
  status=$(sanitizer_verdict "$tool" "$RC" "$LOGS/$tool.log" "$STEP_LIMIT")
  record "$tool" "$status" "$DT" "$(sanitizer_detail "$LOGS/$tool.log")"
  if [[ $status != ok ]]; then
    echo "---- first reports in $LOGS/$tool.log ----"
    grep -n -m 30 -E '^========= (Invalid|Race|Error|Program hit|ERROR|Warning)|^(FAILED|MISMATCH|NOT COVERED)' "$LOGS/$tool.log"
    show_tail "$LOGS/$tool.log" 15
  fi
}
sanitize memcheck
sanitize racecheck

# ---------------------------------------------------------------------------- bench
bench_limit=$(step_timeout bench)
if [[ $bench_limit == skip:* ]]; then
  bench_budget=30
else
  bench_budget=$(( bench_limit - 25 < 180 ? bench_limit - 25 : 180 ))
  (( bench_budget < 30 )) && bench_budget=30
fi
dry_flag=(); [[ $DRY == 1 ]] && dry_flag=(--dry-run)
# shellcheck disable=SC2086 # GPU_BENCH_ARGS is split on purpose
run_step bench "$PY" benches/gpu_bench.py --out "$OUT/gpu_results.md" --json "$OUT/gpu_results.json" \
  --budget-s "$bench_budget" ${dry_flag[@]+"${dry_flag[@]}"} $BENCH_ARGS
status=$(base_status)
line=$(grep -E '^BENCH SUMMARY' "$LOGS/bench.log" | tail -1)
if [[ $status == ok && -z $line ]]; then status="FAIL (no BENCH SUMMARY line)"; fi
record bench "$status" "$DT" "${line:-see logs/bench.log}"
[[ $status == ok ]] || show_tail "$LOGS/bench.log" 25

# ---------------------------------------------------------------------------- collect
if [[ $DRY != 1 ]]; then
  nvidia-smi -q -d CLOCK,PERFORMANCE,TEMPERATURE,POWER > "$LOGS/gpu_after.log" 2>&1 || true
fi
# Keep every log small enough to come back: the head and the tail of a huge one.
for log in "$LOGS"/*.log; do
  size=$(wc -c < "$log")
  if (( size > 4000000 )); then
    { head -c 1000000 "$log"; printf '\n\n[... %s bytes cut by gpu_check.sh ...]\n\n' "$((size - 4000000))"; tail -c 3000000 "$log"; } > "$log.cut"
    mv "$log.cut" "$log"
  fi
done
if [[ -f $OUT/gpu_results.json ]]; then
  echo
  "$PY" benches/gpu_bench.py --summarize "$OUT/gpu_results.json" 2>&1 | tee "$OUT/gpu_results.txt"
fi

total=$(( $(now) - START ))
failures=0
{
  echo
  echo "==================== gpu_check summary: ${total}s of ${BUDGET}s$([[ $DRY == 1 ]] && echo ', DRY RUN') ===================="
  for i in "${!SUMMARY_NAMES[@]}"; do
    printf '%-10s %-42s %5ss  %s\n' "${SUMMARY_NAMES[$i]}" "${SUMMARY_STATUS[$i]}" "${SUMMARY_SECONDS[$i]}" \
      "${SUMMARY_DETAIL[$i]}"
  done
  echo "outputs: $OUT (gpu_results.md, gpu_results.json, gpu_results.txt, summary.txt, logs/)"
} > "$OUT/summary.txt"
for i in "${!SUMMARY_STATUS[@]}"; do
  case ${SUMMARY_STATUS[$i]} in ok|"ok (dry"*|"SKIPPED (dry run)") ;; *) failures=$((failures + 1)) ;; esac
done
echo "steps not ok: $failures" >> "$OUT/summary.txt"
cat "$OUT/summary.txt" | tee -a "$OUT/gpu_check.log"
exit $(( failures > 0 ? 1 : 0 ))
