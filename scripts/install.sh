#!/usr/bin/env bash
# Installs edge-agent as a systemd service on Raspberry Pi OS / Debian gateways, from a checkout
# or an unpacked release. Idempotent: a second run changes nothing that is already right.
# Usage: sudo bash scripts/install.sh [--start] | --uninstall [--purge]   (--help for more)
set -euo pipefail
umask 022

readonly NAME=edge-agent
readonly MIN_NODE_MAJOR=20
readonly GROUPS_NEEDED=(dialout i2c gpio)
# What goes to /opt/edge-agent (dist is the compiled app; drivers and configs are data and docs).
readonly APP_ITEMS=(dist drivers configs systemd package.json package-lock.json)
SRC=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly SRC

usage() {
  cat <<'EOF'
Usage: install.sh [OPTIONS]

Installs edge-agent on a Raspberry Pi OS / Debian gateway: Node.js (>= 20) and build tools from
the distribution when missing, the system user edge-agent (groups dialout, i2c, gpio), the app in
/opt/edge-agent, an example config as /etc/edge-agent/edge-agent.yaml (an existing config is
never overwritten), data in /var/lib/edge-agent, the CLI as /usr/local/bin/edge-agent, and the
unit edge-agent.service (enabled). Run it as root from a checkout or an unpacked release.

Options:
  --start        also start the service (or restart it if it runs and something changed),
                 after checking the config
  --uninstall    stop and disable the service, remove the unit, the CLI and /opt/edge-agent;
                 keep /etc/edge-agent (config) and /var/lib/edge-agent (data)
  --purge        with --uninstall: also remove the config, the data and the user edge-agent
  --prefix DIR   install under DIR as if it were / (staging, tests): files only; packages, the
                 user and systemctl are skipped
  --dry-run      print what would be done, change nothing
  -h, --help     this help

Exit codes: 0 ok, 1 failure, 2 usage error.
EOF
}

usage_error() {
  echo "install.sh: $1 (see --help)" >&2
  exit 2
}

die() {
  echo "install.sh: $*" >&2
  exit 1
}

ACTION=install
START=0
PURGE=0
DRY=0
PREFIX=
while (($# > 0)); do
  case $1 in
    --start) START=1 ;;
    --uninstall) ACTION=uninstall ;;
    --purge) PURGE=1 ;;
    --dry-run) DRY=1 ;;
    --prefix)
      if (($# < 2)) || [[ -z $2 ]]; then usage_error "--prefix needs a directory"; fi
      PREFIX=$2
      shift
      ;;
    --prefix=*) PREFIX=${1#--prefix=} ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) usage_error "unknown option '$1'" ;;
  esac
  shift
done
((PURGE == 0)) || [[ $ACTION == uninstall ]] || usage_error "--purge only goes with --uninstall"
((START == 0)) || [[ $ACTION == install ]] || usage_error "--start does not go with --uninstall"

if [[ -n $PREFIX ]]; then
  [[ $PREFIX == /* ]] || PREFIX="$PWD/$PREFIX"
  PREFIX=${PREFIX%/}
fi
# SYSTEM=1: the real system (packages, user, systemctl); 0 under --prefix (files only).
SYSTEM=1
[[ -z $PREFIX ]] || SYSTEM=0
readonly PREFIX SYSTEM DRY ACTION START PURGE

# Paths on the target; $PREFIX is prepended only where files are written (like DESTDIR).
readonly APP_PATH=/opt/$NAME ETC_PATH=/etc/$NAME DATA_PATH=/var/lib/$NAME
readonly APP=$PREFIX$APP_PATH ETC=$PREFIX$ETC_PATH DATA=$PREFIX$DATA_PATH
readonly UNIT=$NAME.service
readonly UNIT_FILE=$PREFIX/etc/systemd/system/$UNIT
readonly CLI_FILE=$PREFIX/usr/local/bin/$NAME
readonly DEPS_STAMP=$APP/node_modules/.edge-agent-deps

CHANGES=0
# Something the running service would notice: app, dependencies, unit.
APP_CHANGED=0
APT_UPDATED=0

# One line per step: "[area]   what".
say() { printf '%-9s %s\n' "[$1]" "$2"; }

# change AREA DESCRIPTION COMMAND...: counts a change and runs it, or only prints it (--dry-run).
change() {
  local area=$1 what=$2
  shift 2
  CHANGES=$((CHANGES + 1))
  if ((DRY)); then
    say "$area" "would $what"
  else
    say "$area" "$what"
    "$@"
  fi
}

# Commands that need root are checked here rather than failing half-way.
if ((SYSTEM && !DRY)) && [[ $EUID -ne 0 ]]; then
  die "run as root: sudo bash $0 $([[ $ACTION == uninstall ]] && echo --uninstall)"
fi

have() { command -v "$1" >/dev/null 2>&1; }

# systemd is PID 1 (not a chroot or an image build): what sd_booted(3) checks.
booted() { [[ -d /run/systemd/system ]]; }

user_exists() { id -u "$NAME" >/dev/null 2>&1; }

in_group() { [[ " $(id -nG "$NAME" 2>/dev/null) " == *" $1 "* ]]; }

apt_install() {
  if ((APT_UPDATED == 0)); then
    apt-get update -q
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

node_too_old() {
  die "Node.js >= $MIN_NODE_MAJOR is needed, $1 has $2 (Debian 12 and Raspberry Pi OS Bookworm ship 18).
  Install Node.js 22 from NodeSource, then run this script again:
    curl -fsSL https://deb.nodesource.com/setup_22.x -o /tmp/nodesource_setup.sh
    sudo bash /tmp/nodesource_setup.sh && sudo apt-get install -y nodejs
  (Debian 13 / Raspberry Pi OS Trixie ship Node.js 20 and need nothing else.)"
}

node_major() { node -p 'process.versions.node.split(".")[0]'; }

# --- install steps ---------------------------------------------------------------------------

NODE_BIN=/usr/bin/node

step_runtime() {
  if have node; then
    NODE_BIN=$(command -v node)
    local major
    major=$(node_major)
    ((major >= MIN_NODE_MAJOR)) || node_too_old "$NODE_BIN" "$(node --version)"
    case $NODE_BIN in
      /root/* | /home/*)
        local msg="node is $NODE_BIN, in a home directory the service cannot see (ProtectHome=yes): install Node.js system-wide"
        if ((SYSTEM && !DRY)); then die "$msg"; else say runtime "warning: $msg"; fi
        ;;
    esac
    say runtime "node $(node --version) at $NODE_BIN: ok"
  elif ((SYSTEM)); then
    # Ask apt which version it would install before installing anything.
    local candidate
    candidate=$(apt-cache policy nodejs 2>/dev/null | awk '/Candidate:/ {print $2}')
    candidate=${candidate#*:}
    [[ -n $candidate && $candidate != "(none)" ]] || node_too_old "apt" "no nodejs package"
    ((${candidate%%.*} >= MIN_NODE_MAJOR)) || node_too_old "apt" "nodejs $candidate"
    change runtime "install Node.js $candidate: apt-get install nodejs npm" apt_install nodejs npm
  else
    say runtime "node not found (--prefix: packages are not installed)"
  fi
  if have npm || { ((DRY)) && ! have node; }; then
    :
  elif ((SYSTEM)); then
    change runtime "install npm: apt-get install npm" apt_install npm
  else
    say runtime "npm not found (--prefix: packages are not installed)"
  fi

  # i2c-bus and epoll have no prebuilt binaries: npm builds them with node-gyp.
  local missing=() tool
  for tool in python3 make g++; do have "$tool" || missing+=("$tool"); done
  if ((${#missing[@]} == 0)); then
    say runtime "build tools (python3 make g++): ok"
  elif ((SYSTEM)); then
    change runtime "install build tools: apt-get install ${missing[*]}" apt_install "${missing[@]}"
  else
    say runtime "missing build tools: ${missing[*]} (--prefix: packages are not installed)"
  fi
}

# npm as the owner of the checkout, so a root install leaves no root-owned files in it.
npm_in_source() {
  local owner
  owner=$(stat -c %U "$SRC")
  if [[ $EUID -eq 0 && $owner != root ]] && have runuser; then
    local home
    home=$(getent passwd "$owner" | cut -d: -f6)
    (cd "$SRC" && runuser -u "$owner" -- env HOME="$home" npm "$@")
  else
    (cd "$SRC" && npm "$@")
  fi
}

build_app() {
  [[ -x $SRC/node_modules/.bin/tsc ]] || npm_in_source ci --no-audit --no-fund
  npm_in_source run build
  touch "$SRC/dist/.install-build"
}

step_build() {
  local main=$SRC/dist/src/cli/main.js stamp=$SRC/dist/.install-build
  if [[ ! -f $main ]]; then
    change build "build the app in $SRC: npm ci && npm run build" build_app
    return
  fi
  # A checkout updated since the last build (git pull) must not install the old build.
  local ref=$main
  [[ -f $stamp ]] && ref=$stamp
  local newer=
  if [[ -d $SRC/src ]]; then
    newer=$(find "$SRC/src" "$SRC/drivers" -name '*.ts' -newer "$ref" -print -quit 2>/dev/null || true)
  fi
  if [[ -n $newer ]]; then
    change build "rebuild the app in $SRC (${newer#"$SRC"/} is newer than dist/): npm run build" build_app
  else
    say build "dist/ is built: ok"
  fi
}

step_user() {
  if ((!SYSTEM)); then
    say user "skipped under --prefix: system user $NAME, groups ${GROUPS_NEEDED[*]}"
    return
  fi
  local g
  # The unit's SupplementaryGroups= fails the start if a group is missing (plain Debian has no
  # i2c and gpio groups): create them empty.
  for g in "${GROUPS_NEEDED[@]}"; do
    getent group "$g" >/dev/null || change user "create system group $g: groupadd --system $g" groupadd --system "$g"
  done
  if user_exists; then
    say user "system user $NAME: ok"
  else
    change user "create system user $NAME (no login, home $DATA_PATH): useradd --system" \
      useradd --system --user-group --home-dir "$DATA_PATH" --no-create-home \
      --shell /usr/sbin/nologin --comment "edge-agent gateway agent" "$NAME"
  fi
  local ok=()
  for g in "${GROUPS_NEEDED[@]}"; do
    if in_group "$g"; then ok+=("$g"); else change user "add $NAME to group $g: usermod -aG $g $NAME" usermod -aG "$g" "$NAME"; fi
  done
  ((${#ok[@]} == 0)) || say user "groups of $NAME: ${ok[*]}: ok"
}

# Replaces a file or tree in one rename, so a failed copy never leaves half of one.
copy_item() {
  local from=$SRC/$1 to=$APP/$1 tmp="$APP/.$1.new"
  rm -rf "$tmp"
  cp -R "$from" "$tmp"
  rm -rf "$to"
  mv "$tmp" "$to"
}

step_app() {
  local item same=()
  [[ -d $APP ]] || change app "create $APP" mkdir -p "$APP"
  for item in "${APP_ITEMS[@]}"; do
    if [[ ! -e $SRC/$item ]]; then
      # dist/ is built in step_build (a dry run only plans it); the rest come with the source.
      if [[ $item != dist ]] || ((!DRY)); then
        die "$SRC/$item is missing: is this an edge-agent checkout or release?"
      fi
      change app "copy $item to $APP/" copy_item "$item"
      APP_CHANGED=1
    elif [[ -e $APP/$item ]] && diff -r -q "$SRC/$item" "$APP/$item" >/dev/null 2>&1; then
      same+=("$item")
    else
      change app "copy $item to $APP/" copy_item "$item"
      APP_CHANGED=1
    fi
  done
  ((${#same[@]} == 0)) || say app "up to date in $APP: ${same[*]}"
}

deps_id() {
  local abi=none
  have node && abi=$(node -p process.versions.modules)
  printf '%s node-abi=%s %s\n' "$(sha256sum <"$SRC/package-lock.json" | cut -d' ' -f1)" "$abi" "$(uname -m)"
}

install_deps() {
  # npm ci would run the package's prepare script (tsc, a dev tool that is not installed);
  # npm rebuild then runs the dependencies' install scripts (native builds) without it.
  (cd "$APP" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm rebuild)
  deps_id >"$DEPS_STAMP"
}

step_deps() {
  # Same lockfile, same Node ABI, same machine: the native modules in node_modules still fit.
  if [[ -f $DEPS_STAMP && $(<"$DEPS_STAMP") == "$(deps_id)" ]]; then
    say deps "runtime dependencies in $APP/node_modules: ok"
  else
    change deps "install runtime dependencies in $APP: npm ci --omit=dev && npm rebuild" install_deps
    APP_CHANGED=1
  fi
}

render_cli() {
  printf '#!/bin/sh\n# The edge-agent command line (installed by scripts/install.sh).\nexec %s %s/dist/src/cli/main.js "$@"\n' \
    "$NODE_BIN" "$APP_PATH"
}

render_unit() {
  # Node from NodeSource or Debian is /usr/bin/node; anywhere else, point ExecStart at it.
  sed "s|^ExecStart=/usr/bin/node |ExecStart=$NODE_BIN |" "$SRC/systemd/$UNIT"
}

# write_file PATH MODE RENDER_FUNCTION
write_file() {
  mkdir -p "$(dirname "$1")"
  "$3" >"$1.new"
  chmod "$2" "$1.new"
  mv "$1.new" "$1"
}

step_cli() {
  if [[ -f $CLI_FILE && $(<"$CLI_FILE") == "$(render_cli)" ]]; then
    say cli "$CLI_FILE: ok"
  else
    change cli "install the command line as $CLI_FILE" write_file "$CLI_FILE" 0755 render_cli
  fi
}

install_config() {
  mkdir -p "$ETC"
  install -m 0640 "$SRC/configs/gateway.example.yaml" "$ETC/$NAME.yaml"
  # The config holds the broker password: root writes it, the agent's group reads it.
  if ((SYSTEM)); then chgrp "$NAME" "$ETC" "$ETC/$NAME.yaml"; fi
  chmod 0750 "$ETC"
}

step_config() {
  if [[ -f $ETC/$NAME.yaml ]]; then
    say config "$ETC/$NAME.yaml exists: kept (never overwritten)"
  else
    change config "install the example config as $ETC/$NAME.yaml (set site, gateway and uplink in it)" install_config
  fi
}

create_data() {
  mkdir -p "$DATA"
  chmod 0750 "$DATA"
  if ((SYSTEM)); then chown "$NAME:$NAME" "$DATA"; fi
}

step_data() {
  if [[ -d $DATA ]]; then
    say data "$DATA exists: ok"
  else
    change data "create $DATA (outbox and control socket; owner $NAME, mode 0750)" create_data
  fi
}

step_unit() {
  local reload=0
  if [[ -f $UNIT_FILE && $(<"$UNIT_FILE") == "$(render_unit)" ]]; then
    say unit "$UNIT_FILE: ok"
  else
    change unit "install $UNIT_FILE" write_file "$UNIT_FILE" 0644 render_unit
    reload=1
    APP_CHANGED=1
  fi
  if ((!SYSTEM)); then
    say unit "skipped under --prefix: systemctl daemon-reload, enable $UNIT"
    return
  fi
  have systemctl || die "systemctl not found: edge-agent runs as a systemd service (see $APP_PATH/systemd/README.md)"
  if ((reload)) && booted; then change unit "reload systemd: systemctl daemon-reload" systemctl daemon-reload; fi
  if systemctl is-enabled --quiet "$UNIT" 2>/dev/null; then
    say unit "$UNIT enabled (starts at boot): ok"
  else
    change unit "enable $UNIT (starts at boot): systemctl enable" systemctl enable --quiet "$UNIT"
  fi
}

check_config() {
  runuser -u "$NAME" -- "$NODE_BIN" "$APP/dist/src/cli/main.js" config check "$ETC/$NAME.yaml" ||
    die "not starting $UNIT: fix $ETC/$NAME.yaml first (edge-agent config check $ETC/$NAME.yaml)"
}

step_start() {
  ((SYSTEM)) || {
    ((START == 0)) || say service "skipped under --prefix: systemctl start $UNIT"
    return
  }
  if ! booted; then
    say service "systemd is not running here: $UNIT starts at the next boot"
    return
  fi
  local active=0
  systemctl is-active --quiet "$UNIT" 2>/dev/null && active=1
  if ((START)); then
    ((DRY)) || check_config
    if ((!active)); then
      change service "start $UNIT: systemctl start" systemctl start "$UNIT"
    elif ((APP_CHANGED)); then
      change service "restart $UNIT to run the new version: systemctl restart" systemctl restart "$UNIT"
    else
      say service "$UNIT is running: ok"
    fi
  elif ((active && APP_CHANGED)); then
    say service "$UNIT runs the previous version: systemctl restart $UNIT (or run again with --start)"
  elif ((!active)); then
    say service "$UNIT is not running: edit $ETC_PATH/$NAME.yaml, then systemctl start $UNIT (or run again with --start)"
  fi
}

do_install() {
  step_runtime
  step_build
  step_user
  step_app
  step_deps
  step_cli
  step_config
  step_data
  step_unit
  step_start
}

# --- uninstall -------------------------------------------------------------------------------

do_uninstall() {
  if ((SYSTEM)) && booted && systemctl is-active --quiet "$UNIT" 2>/dev/null; then
    change service "stop $UNIT (it flushes the outbox first): systemctl stop" systemctl stop "$UNIT"
  fi
  if ((SYSTEM)) && have systemctl && systemctl is-enabled --quiet "$UNIT" 2>/dev/null; then
    change unit "disable $UNIT: systemctl disable" systemctl disable --quiet "$UNIT"
  fi
  if [[ -e $UNIT_FILE ]]; then
    change unit "remove $UNIT_FILE" rm -f "$UNIT_FILE"
    if ((SYSTEM)) && booted; then change unit "reload systemd: systemctl daemon-reload" systemctl daemon-reload; fi
  fi
  [[ ! -e $CLI_FILE ]] || change cli "remove $CLI_FILE" rm -f "$CLI_FILE"
  [[ ! -e $APP ]] || change app "remove $APP" rm -rf "$APP"
  if ((PURGE)); then
    [[ ! -e $ETC ]] || change config "remove $ETC (the config)" rm -rf "$ETC"
    [[ ! -e $DATA ]] || change data "remove $DATA (the outbox: readings not yet sent are lost)" rm -rf "$DATA"
    if ((SYSTEM)) && user_exists; then change user "remove the user $NAME: userdel $NAME" userdel "$NAME"; fi
  else
    local kept=()
    [[ ! -e $ETC ]] || kept+=("$ETC (config)")
    [[ ! -e $DATA ]] || kept+=("$DATA (data)")
    if ((SYSTEM)) && user_exists; then kept+=("user $NAME"); fi
    if ((${#kept[@]} > 0)); then
      local list
      list=$(printf ', %s' "${kept[@]}")
      say keep "kept ${list:2}: --uninstall --purge removes them"
    fi
  fi
}

# --- main ------------------------------------------------------------------------------------

mode=
((DRY)) && mode=", dry run: nothing is changed"
echo "edge-agent $ACTION from $SRC${PREFIX:+ into $PREFIX}$mode"
if [[ $ACTION == install ]]; then do_install; else do_uninstall; fi

if ((DRY)); then
  if ((CHANGES == 0)); then echo "dry run: nothing to change"; else echo "dry run: $CHANGES changes planned, none made"; fi
elif ((CHANGES == 0)); then
  if [[ $ACTION == install ]]; then echo "edge-agent is installed and up to date: nothing changed"; else echo "edge-agent is not installed: nothing to remove"; fi
else
  echo "done: $CHANGES changes"
fi
