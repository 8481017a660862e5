#!/usr/bin/env bash
# README command 2: the whole test suite (unit tests and integration tests against a real server).
# Needs root: the tests create namespaces, cgroups and mounts.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" || exit 1
cd "$root"

out="$(mktemp)" agent_out="$(mktemp)" sdk_out="$(mktemp)" budgets_out="$(mktemp)"
trap 'rm -f "$out" "$agent_out" "$sdk_out" "$budgets_out"' EXIT

# The agent's own unit tests (hibernate's file format and pickling), with the sandboxes' interpreter.
# unittest prints "Ran N tests" then "OK" or "FAILED (failures=F, errors=E)"; counted with the rest below.
/usr/bin/python3 -m unittest discover -s tests/agent 2>&1 | tee "$agent_out"
agent_status=${PIPESTATUS[0]}
agent_ran=$(awk '/^Ran [0-9]+ test/ {print $2}' "$agent_out")
agent_failed=$(grep -oE '(failures|errors)=[0-9]+' "$agent_out" | awk -F= '{n+=$2} END {print n+0}')

dotnet test Forkbox.slnx --no-build -nologo --logger "console;verbosity=normal" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}

# The Python SDK's tests, after dotnet test: each module starts the built CLI (`forkbox serve`).
# Counted like the agent's, with skips; a run in which no SDK test ran counts as a failure.
/usr/bin/python3 -m unittest discover -s sdk/python/tests -v 2>&1 | tee "$sdk_out"
sdk_status=${PIPESTATUS[0]}
sdk_ran=$(awk '/^Ran [0-9]+ test/ {n = $2} END {print n + 0}' "$sdk_out")
sdk_failed=$(grep -E '^(OK|FAILED)( \(.*\))?$' "$sdk_out" | tail -n 1 | grep -oE '(failures|errors|unexpected successes)=[0-9]+' | awk -F= '{n+=$2} END {print n+0}')
sdk_skipped=$(grep -E '^(OK|FAILED)( \(.*\))?$' "$sdk_out" | tail -n 1 | grep -oE 'skipped=[0-9]+' | awk -F= '{n+=$2} END {print n+0}')
sdk_passed=$(( ${sdk_ran:-0} - sdk_failed - sdk_skipped ))
if (( sdk_passed < 0 )); then sdk_passed=0; fi
if (( ${sdk_ran:-0} == 0 )); then
  echo "test.sh: no Python SDK test ran" >&2
  sdk_failed=$((sdk_failed + 1))
elif (( sdk_status != 0 && sdk_failed == 0 )); then
  sdk_failed=1
fi

# The C# SDK must pack: Forkbox.Client and the wire types it depends on, Forkbox.Core. One check, counted.
pack_dir="$(mktemp -d)"
if dotnet pack Forkbox.slnx --no-build -c Debug -nologo -v quiet -o "$pack_dir" \
   && compgen -G "$pack_dir/Forkbox.Client.*.nupkg" >/dev/null && compgen -G "$pack_dir/Forkbox.Core.*.nupkg" >/dev/null; then
  echo "pack: $(cd "$pack_dir" && echo *.nupkg)"
  pack_failed=0
else
  echo "test.sh: dotnet pack did not make Forkbox.Client and Forkbox.Core" >&2
  pack_failed=1
fi
rm -rf "$pack_dir"

# The exec path's allocations against bench/allocation-budgets.json: every benchmark of
# bench/Forkbox.Benchmarks once, with a short job, in process (about 15 s after its build). One check,
# counted. Release, because a Debug build's async methods allocate their state machines on the heap.
if dotnet run -c Release --project bench/Forkbox.Benchmarks -v quiet -- --check-budgets bench/allocation-budgets.json 2>&1 | tee "$budgets_out"; then
  budgets_failed=0
else
  echo "test.sh: allocations over their budgets in bench/allocation-budgets.json, or a benchmark did not run" >&2
  budgets_failed=1
fi

# One closing line for the whole run, summed over the test projects.
# Each test project ends with "Total tests: N" then indented "Passed: N", "Failed: N", "Skipped: N".
read -r passed failed skipped < <(awk '/^Total tests:/ {t=1; next} t && /^ +(Passed|Failed|Skipped): +[0-9]+$/ {n[$1]+=$2; next} {t=0}
  END {print n["Passed:"]+0, n["Failed:"]+0, n["Skipped:"]+0}' "$out")
passed=$((passed + ${agent_ran:-0} - agent_failed))
failed=$((failed + agent_failed))
passed=$((passed + sdk_passed + 1 - pack_failed + 1 - budgets_failed))
failed=$((failed + sdk_failed + pack_failed + budgets_failed))
skipped=$((skipped + sdk_skipped))
if (( agent_status != 0 && agent_failed == 0 )); then failed=$((failed + 1)); fi
# The failures again, by name, just above the closing line: CI shows a run's tail.
{
  awk '/^ +Failed [A-Za-z_].* \[[^]]*\]$/ {name = $0; sub(/^ +Failed /, "", name); sub(/ \[[^]]*\]$/, "", name); next}
       name != "" && /^ +Error Message:/ {getline msg; sub(/^ +/, "", msg); print "failed: " name ": " substr(msg, 1, 300); name = ""}' "$out"
  grep -hE '^(FAIL|ERROR): ' "$sdk_out" "$agent_out" | sed -E 's/^(FAIL|ERROR): /failed: /'
  awk '/^[A-Za-z]+Benchmarks\.[A-Za-z0-9_]+ / && $NF != "ok" {print "failed: allocation budget: " $0}' "$budgets_out"
} | sort -u
echo "tests: $passed passed, $failed failed, $skipped skipped"
if (( passed + failed == 0 )); then
  echo "test.sh: no test ran" >&2
  exit 1
fi
if (( status != 0 || failed != 0 )); then exit 1; fi
