#!/usr/bin/env bash
# Gives the test suite a real PostgreSQL server of its own, idempotently: a private cluster in
# ${MANDATE_PG_DIR:-/tmp/mandate-pg} (data/, run/ for the socket, log), on 127.0.0.1 port
# ${MANDATE_PG_PORT:-55432}, trust authentication, superuser `postgres`. It never touches the
# Debian-managed system cluster (port 5432), which the package may have created.
#
#   scripts/postgres.sh start    install Debian's `postgresql` if its server binaries are missing,
#                                initdb once, start if not running, wait until it accepts
#                                connections, then print the URL (the only line on stdout)
#   scripts/postgres.sh stop     fast shutdown if running; nothing to do otherwise
#   scripts/postgres.sh url      print postgres://postgres@127.0.0.1:PORT/postgres
#   scripts/postgres.sh destroy  stop, then remove the cluster's directory
#
# PostgreSQL refuses to run as root, so as root (the tests' and CI's user) the server programs run
# as the `postgres` system user that the Debian package creates; run by anyone else, as that user.
set -euo pipefail

dir=${MANDATE_PG_DIR:-/tmp/mandate-pg}
dir=$(realpath -m -- "$dir")
port=${MANDATE_PG_PORT:-55432}
data=$dir/data
url="postgres://postgres@127.0.0.1:${port}/postgres"

say() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[[ $port =~ ^[0-9]+$ ]] || die "MANDATE_PG_PORT must be a number, not '$port'"
[[ $dir != / ]] || die "MANDATE_PG_DIR must not be /"

# The newest installed PostgreSQL whose *server* programs are there (postgresql-client alone also
# makes /usr/lib/postgresql/N/bin, with psql and pg_isready but no initdb or postgres).
find_bin() {
  local d
  while IFS= read -r d; do
    if [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres && -x $d/pg_isready ]]; then
      printf '%s\n' "$d"
      return 0
    fi
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV)
  return 1
}

install_server() {
  [[ $(id -u) -eq 0 ]] || die "PostgreSQL's server binaries are not installed; as root: apt-get install postgresql"
  local updated=0 policy
  # Refresh the package lists only when apt knows no candidate for postgresql (fresh image, lists
  # removed), or when an install from the lists it has fails (stale lists name removed files).
  # (Captured first: `apt-cache ... | grep -q` under pipefail fails when grep stops reading early.)
  policy=$(apt-cache policy postgresql 2>/dev/null || true)
  if ! grep -q 'Candidate: [0-9]' <<<"$policy"; then
    say "apt-get update"
    apt-get update -qq
    updated=1
  fi
  say "installing Debian's postgresql"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2; then
    [[ $updated -eq 0 ]] || die "apt-get install postgresql failed"
    say "apt-get install failed; apt-get update and one more try"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  fi
}

# Runs a command as the user the server runs as, from / (the postgres user may not be able to
# read the caller's working directory, and initdb and pg_ctl look it up).
as_pg() {
  if [[ $(id -u) -ne 0 ]]; then
    (cd / && "$@")
  elif command -v runuser >/dev/null 2>&1; then
    (cd / && runuser -u postgres -- "$@")
  else
    # One quoted command line, no arguments after it: su would parse those as its own options.
    (cd / && su -s /bin/bash -c "exec $(printf '%q ' "$@")" postgres)
  fi
}

# The pid in postmaster.pid, if any, and whether a pid is a zombie (a killed process its parent has
# not reaped yet: kill(pid, 0), which pg_ctl and the postmaster test, still succeeds on one).
old_pid() { head -n 1 "$data/postmaster.pid" 2>/dev/null || true; }
zombie() { [[ -n $1 && $(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) == Z ]]; }

running() {
  [[ -f $data/PG_VERSION ]] && as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1 && ! zombie "$(old_pid)"
}

# A postmaster killed outright (kill -9, the end of a session) stays a zombie until its parent, often
# pid 1, reaps it, and its children notice its death only a moment later; a new postmaster refuses
# to start while either is there ("lock file already exists", "shared memory block still in use").
# Wait for them, bounded: leftovers are a zombie at the old pid, or a live process working in $data.
settle() {
  local pid i c busy
  pid=$(old_pid)
  for ((i = 0; i < 60; i++)); do
    busy=0
    if zombie "$pid"; then busy=1; fi
    for c in /proc/[0-9]*/cwd; do
      if [[ $(readlink "$c" 2>/dev/null) == "$data" ]]; then busy=1; fi
    done
    [[ $busy -eq 1 ]] || return 0
    [[ $i -gt 0 ]] || say "waiting for the processes of a killed server to go"
    sleep 0.5
  done
}

# Our settings, rewritten at every start that starts the server (so a changed MANDATE_PG_PORT or
# MANDATE_PG_DIR takes effect); postgresql.conf includes this file. fsync and synchronous_commit
# stay at their defaults (on), as in production: what the tests see committed is on disk.
write_conf() {
  local conf=$1/mandate.conf
  cat > "$conf.tmp" <<EOF
# Written by scripts/postgres.sh at each start; edits are lost.
listen_addresses = '127.0.0.1'
port = ${port}
unix_socket_directories = '${dir}/run'
max_connections = 400
shared_buffers = 128MB
fsync = on
EOF
  mv -f "$conf.tmp" "$conf"
  if ! grep -qx "include_if_exists = 'mandate.conf'" "$1/postgresql.conf"; then
    printf "\n# scripts/postgres.sh\ninclude_if_exists = 'mandate.conf'\n" >> "$1/postgresql.conf"
  fi
  [[ $(id -u) -ne 0 ]] || chown postgres: "$conf" "$1/postgresql.conf"
}

start() {
  bin=$(find_bin) || { install_server; bin=$(find_bin) || die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin after installing"; }

  mkdir -p "$dir/run"
  if [[ $(id -u) -eq 0 ]]; then
    getent passwd postgres >/dev/null || die "no 'postgres' user (the Debian package creates it)"
    chown -R postgres: "$dir"
    as_pg test -w "$dir" || die "the postgres user cannot write $dir (is a parent directory closed to it?); set MANDATE_PG_DIR elsewhere, e.g. under /tmp"
  fi

  if [[ ! -f $data/PG_VERSION ]]; then
    [[ ! -e $data ]] || die "$data exists but holds no cluster; run '$0 destroy' first"
    local locale=(--locale=C.UTF-8) locales
    locales=$(locale -a 2>/dev/null || true)
    if ! grep -qix 'c\.utf-\?8' <<<"$locales"; then locale=(--no-locale); fi
    say "initdb $data ($("$bin/postgres" --version))"
    # Into a scratch directory, moved into place when complete: a killed initdb leaves no half
    # cluster behind at $data.
    rm -rf "$dir/data.init"
    as_pg "$bin/initdb" -D "$dir/data.init" -U postgres --auth=trust --encoding=UTF8 "${locale[@]}" >/dev/null
    write_conf "$dir/data.init"
    mv "$dir/data.init" "$data"
  fi

  if running; then
    say "already running ($data)"
  else
    settle
    write_conf "$data"
    # A stale postmaster.pid left by a killed server is no obstacle: the new postmaster takes it over
    # (pg_ctl says "another server might be running; trying to start server anyway") and recovers.
    as_pg "$bin/pg_ctl" -D "$data" -l "$dir/log" -w -t 60 start >&2 || {
      say "pg_ctl start failed; the end of $dir/log:"
      tail -n 20 "$dir/log" >&2 || true
      exit 1
    }
  fi

  local i
  for ((i = 0; i < 60; i++)); do
    if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; then
      printf '%s\n' "$url"
      return 0
    fi
    sleep 0.5
  done
  say "the server did not accept connections on 127.0.0.1:$port within 30 s; the end of $dir/log:"
  tail -n 20 "$dir/log" >&2 || true
  exit 1
}

stop() {
  [[ -f $data/PG_VERSION ]] || return 0
  bin=$(find_bin) || return 0
  if running; then
    as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >&2
  fi
}

destroy() {
  stop
  [[ -e $dir ]] || return 0
  # Refuse to delete a directory that holds anything this script did not make there (a mistaken
  # MANDATE_PG_DIR must not cost someone their files).
  local entry
  for entry in "$dir"/* "$dir"/.[!.]*; do
    [[ -e $entry || -L $entry ]] || continue
    case ${entry##*/} in
      data | data.init | run | log) ;;
      *) die "$dir holds '${entry##*/}', which this script did not make; not removing it" ;;
    esac
  done
  rm -rf -- "$dir"
  say "removed $dir"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  url) printf '%s\n' "$url" ;;
  destroy) destroy ;;
  *)
    echo "usage: $0 start|stop|url|destroy" >&2
    exit 2
    ;;
esac
