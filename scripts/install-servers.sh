#!/usr/bin/env bash
# Install the Debian server packages the lab and the tests start (never the running services:
# the lab starts its own instances on free loopback ports). Root installs; others are told how.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
getent passwd postgres >/dev/null 2>&1 || missing+=(postgresql)
has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/lib/rabbitmq/bin/$1" ]; }
has mariadbd || missing+=(mariadb-server)
has rabbitmq-server || missing+=(rabbitmq-server)
has mosquitto || missing+=(mosquitto)
has nats-server || missing+=(nats-server)
has etcd || missing+=(etcd-server)
has clickhouse-server || missing+=(clickhouse-server)
has influxd || missing+=(influxdb)
has memcached || missing+=(memcached)
[ -f /usr/share/java/zookeeper.jar ] || missing+=(zookeeper)
has saslpasswd2 || missing+=(sasl2-bin)
compgen -G '/usr/lib/*/sasl2/libplain.so*' >/dev/null || missing+=(libsasl2-modules)
[ -x /usr/bin/chromium ] || missing+=(chromium)  # the HTML report's browser test (no download)
has node || missing+=(nodejs)
has npm || missing+=(npm)

install_apt() {
  [ ${#missing[@]} -eq 0 ] && return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing server packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "installing server packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# CouchDB has no Debian package: npm's pouchdb-server speaks its HTTP API. It goes to a cache
# outside the repository (where perisai.lab.couchdb_server looks for it), never into the tests.
install_pouchdb() {
  local prefix="${PERISAI_NPM_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/perisai/npm}"
  [ -x "$prefix/node_modules/.bin/pouchdb-server" ] && return 0
  echo "installing pouchdb-server into $prefix"
  npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error pouchdb-server@4.2.0 >/dev/null
}

install_apt
install_pouchdb
