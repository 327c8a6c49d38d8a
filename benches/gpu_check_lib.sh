# Functions of benches/gpu_check.sh that decide things: time limits, where
# compute-sanitizer is, and whether a step's log says it passed. Kept apart so that
# tests/test_gpu_check.py can source this file and try them on sample logs, without a GPU.
# Bash; sourced, not run.

# step_timeout NAME: the timeout for step NAME, from STEPS ("name:cap:minimum" in run
# order), DEADLINE (epoch seconds) and COLLECT_RESERVE: the step's cap, shortened so that
# every later step keeps its minimum. Prints the seconds, or "skip:<seconds>" when even
# the step's own minimum no longer fits.
step_timeout() {
  local name=$1 cap=0 min=0 reserve=${COLLECT_RESERVE:-0} later=0 entry n c m
  for entry in "${STEPS[@]}"; do
    IFS=: read -r n c m <<< "$entry"
    if [[ $later == 1 ]]; then reserve=$((reserve + m)); fi
    if [[ $n == "$name" ]]; then cap=$c; min=$m; later=1; fi
  done
  local left=$((DEADLINE - $(date +%s) - reserve))
  local t=$(( left < cap ? left : cap ))
  if (( t < min )); then echo "skip:$t"; else echo "$t"; fi
}

# find_sanitizer: the path of compute-sanitizer (PATH, the CUDA install dirs, CUDA_HOME,
# beside nvcc); status 1 if there is none.
find_sanitizer() {
  local candidate
  if command -v compute-sanitizer > /dev/null 2>&1; then command -v compute-sanitizer; return 0; fi
  for candidate in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda*/bin/compute-sanitizer \
                   /usr/local/cuda/compute-sanitizer/compute-sanitizer \
                   /usr/local/cuda*/compute-sanitizer/compute-sanitizer \
                   "${CUDA_HOME:-/nonexistent}/bin/compute-sanitizer"; do
    if [[ -x $candidate ]]; then echo "$candidate"; return 0; fi
  done
  if command -v nvcc > /dev/null 2>&1; then
    candidate="$(dirname "$(command -v nvcc)")/compute-sanitizer"
    if [[ -x $candidate ]]; then echo "$candidate"; return 0; fi
  fi
  return 1
}

# exit_verdict RC LIMIT: a step's status from its exit code alone.
exit_verdict() {
  case $1 in
    0) echo ok ;;
    124|137) echo "TIMEOUT after ${2}s" ;;
    200) echo "SKIPPED (time budget)" ;;
    *) echo "FAIL (exit $1)" ;;
  esac
}

# sanitizer_verdict TOOL RC LOG: ok only if the sanitizer ran to the end with a clean
# summary AND the script printed its own summary with nothing failed. memcheck ends with
# "ERROR SUMMARY: N errors"; racecheck with "RACECHECK SUMMARY: N hazards displayed
# (E errors, W warnings)" (warnings count: a hazard that happened to be harmless is still
# a hazard). The script's line matters: a target that died early can leave a clean summary.
sanitizer_verdict() {
  local tool=$1 rc=$2 log=$3 errors race script
  errors=$(grep -oE 'ERROR SUMMARY: [0-9]+ errors?' "$log" 2>/dev/null | tail -1)
  race=$(grep -oE 'RACECHECK SUMMARY: [0-9]+ hazards? displayed \([0-9]+ errors?, [0-9]+ warnings?\)' "$log" 2>/dev/null | tail -1)
  script=$(grep -E '^SANITIZE SCRIPT' "$log" 2>/dev/null | tail -1)
  if [[ $rc == 3 ]]; then
    echo "FAIL (the sanitizer reported errors: ${race:-${errors:-see the log}})"
  elif [[ $rc != 0 ]]; then
    exit_verdict "$rc" "${4:-?}"
  elif [[ -n $errors && $errors != "ERROR SUMMARY: 0 errors" ]]; then
    echo "FAIL ($errors)"
  elif [[ $tool == memcheck && -z $errors ]]; then
    echo "FAIL (no ERROR SUMMARY line)"
  elif [[ $tool == racecheck && -z $race ]]; then
    echo "FAIL (no RACECHECK SUMMARY line)"
  elif [[ $tool == racecheck && $race != *"(0 errors, 0 warnings)" ]]; then
    echo "FAIL (${race#RACECHECK SUMMARY: })"
  elif [[ $script != *" 0 failed, 0 fast/reference mismatches, 0 kernels"* ]]; then
    echo "FAIL (${script:-the script printed no summary})"
  else
    echo ok
  fi
}

# sanitizer_detail LOG: the summary lines, for the report.
sanitizer_detail() {
  local log=$1 errors race script
  errors=$(grep -oE 'ERROR SUMMARY: [0-9]+ errors?' "$log" 2>/dev/null | tail -1)
  race=$(grep -oE 'RACECHECK SUMMARY: .*' "$log" 2>/dev/null | tail -1)
  script=$(grep -E '^SANITIZE SCRIPT' "$log" 2>/dev/null | tail -1)
  echo "${errors:-no ERROR SUMMARY}${race:+; $race}; ${script:-no script summary}"
}

# pytest_verdict RC LOG LIMIT: ok only if pytest passed and at least one test ran (without
# a GPU, every cuda test is skipped and pytest still exits 0).
pytest_verdict() {
  local rc=$1 log=$2 line passed
  line=$(pytest_line "$log")
  passed=$(grep -oE '[0-9]+ passed' <<< "$line" | grep -oE '[0-9]+' || true)
  if [[ $rc != 0 ]]; then
    exit_verdict "$rc" "${3:-?}"
  elif [[ -z $passed || $passed == 0 ]]; then
    echo "FAIL (no cuda test passed: all skipped?)"
  else
    echo ok
  fi
}

# pytest_line LOG: pytest's final tally ("12 passed, 3 skipped, 900 deselected in 30.1s"),
# or, for a run cut before its tally, the count of the -v lines it printed.
pytest_line() {
  local tally
  tally=$(grep -E '^=+ .*[0-9]+ (passed|failed|skipped|deselected|errors?).* =+$|^[0-9]+ (passed|failed|skipped|deselected|errors?)|no tests ran' \
          "$1" 2>/dev/null | tail -1 | sed 's/^=* *//; s/ *=*$//')
  if [[ -n $tally ]]; then echo "$tally"; return; fi
  echo "no tally (cut?): $(grep -cE ' PASSED( |$)' "$1" 2>/dev/null) passed, $(grep -cE ' FAILED( |$)' "$1" 2>/dev/null) failed, $(grep -cE ' SKIPPED( |$)' "$1" 2>/dev/null) skipped so far"
}
