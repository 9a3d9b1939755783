#!/usr/bin/env bash
# Run the test suite while N busy loops keep the CPUs busy, as on a shared CI machine.
#   scripts/load-test.sh [-n N] [vitest args, e.g. test/integration/opcua.test.ts]
#   scripts/load-test.sh [-n N] -- COMMAND [ARGS]
# N defaults to the number of CPUs. Without args it runs `npm test` (build, lint, all tests);
# with vitest args, `npx vitest run ARGS`; after `--`, COMMAND. The exit status is the tests'.
# The loops are killed on every exit, Ctrl-C included.
set -u
n=$(nproc 2>/dev/null || echo 2)
if [ "${1:-}" = "-n" ]; then
  n=$2
  shift 2
fi
cd "$(dirname "$0")/.." || exit 1

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  wait "${pids[@]}" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

for _ in $(seq "$n"); do
  (while :; do :; done) &
  pids+=($!)
done
echo "load-test: $n busy loop(s) running (pids ${pids[*]})" >&2

if [ $# -eq 0 ]; then
  npm test
elif [ "$1" = "--" ]; then
  shift
  "$@"
else
  npx vitest run "$@"
fi
