#!/usr/bin/env bash
# Run a throw-away OpenLDAP slapd with gatehouse's test directory.
#
#   tests/ldap/slapd.sh start DIR PORT [tls]
#   tests/ldap/slapd.sh stop DIR
#
# start: builds a cn=config in DIR/slapd.d from config.ldif (slapadd -n0),
#        runs slapd in the background without detaching (its PID in
#        DIR/slapd.pid, its log in DIR/slapd.log) listening on
#        ldap://127.0.0.1:PORT/ only, waits until it answers, then loads
#        data.ldif and big.ldif with ldapadd as the rootdn.
#        With "tls": also writes a test CA (DIR/ca.pem) and a server
#        certificate for 127.0.0.1 / localhost, enables StartTLS on PORT and
#        listens on ldaps://127.0.0.1:PORT+1/ as well.
#        When DIR holds a server from a previous successful start, that one
#        is started again: configuration and data are kept, nothing is
#        loaded (a restart; pass "tls" again for the ldaps:// listener).
# stop:  sends SIGTERM to the PID in DIR/slapd.pid and waits for it to exit.
#
# Rootdn cn=admin,dc=example,dc=com / secret; service account
# cn=gatehouse,ou=services,dc=example,dc=com / gatehouse-secret; anonymous
# read is allowed. Try:
#   ldapsearch -x -H ldap://127.0.0.1:PORT -b dc=example,dc=com '(uid=alice)' memberOf
#   LDAPTLS_CACERT=DIR/ca.pem ldapsearch -x -ZZ -H ldap://127.0.0.1:PORT -b dc=example,dc=com '(uid=alice)'
#
# Needs slapd, slapadd, ldapadd, ss (iproute2), and openssl for tls.
# Environment: SLAPD (slapd binary), SLAPADD, LDAP_MODULEDIR (default
# /usr/lib/ldap), LDAP_SCHEMADIR (default /etc/ldap/schema), LDAP_BIG=0 to
# skip big.ldif.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOTDN='cn=admin,dc=example,dc=com'
ROOTPW='secret'

die() { echo "slapd.sh: $*" >&2; exit 1; }
# shellcheck source=tests/lib/daemon.sh
. "$here/../lib/daemon.sh"

# True when PID is a slapd started on DIR (guards against a reused PID).
is_our_slapd() {
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "-F $2/slapd.d "
}

make_tls() {
    make_test_tls "$1" 'gatehouse test CA' localhost 'IP:127.0.0.1, DNS:localhost'
}

build() {
    local dir=$1 tls=$2
    local moduledir=${LDAP_MODULEDIR:-/usr/lib/ldap}
    local schemadir=${LDAP_SCHEMADIR:-/etc/ldap/schema}
    mkdir -p "$dir/slapd.d" "$dir/db"
    if [ "$tls" = 1 ]; then make_tls "$dir"; fi
    # Fill in the placeholders; a server without TLS has no olcTLS* lines.
    sed -e "s|@DBDIR@|$dir/db|g" \
        -e "s|@MODULEDIR@|$moduledir|g" \
        -e "s|@SCHEMADIR@|$schemadir|g" \
        -e "s|@TLS_CERT@|$dir/server.pem|g" \
        -e "s|@TLS_KEY@|$dir/server.key|g" \
        -e "s|@TLS_CA@|$dir/ca.pem|g" \
        "$here/config.ldif" >"$dir/config.ldif"
    if [ "$tls" != 1 ]; then sed -i '/^olcTLS/d' "$dir/config.ldif"; fi
    "${SLAPADD:-$(find_cmd slapadd)}" -n0 -F "$dir/slapd.d" -l "$dir/config.ldif" >"$dir/slapadd.log" 2>&1 \
        || { cat "$dir/slapadd.log" >&2; die "slapadd of the config failed"; }
}

load() {
    local dir=$1 url=$2 file
    local files=("$here/data.ldif")
    if [ "${LDAP_BIG:-1}" != 0 ]; then files+=("$here/big.ldif"); fi
    for file in "${files[@]}"; do
        # LDAPNOINIT: ignore /etc/ldap/ldap.conf and ~/.ldaprc.
        LDAPNOINIT=1 ldapadd -x -H "$url" -D "$ROOTDN" -w "$ROOTPW" -f "$file" >>"$dir/ldapadd.log" 2>&1 \
            || { tail -n 5 "$dir/ldapadd.log" >&2; echo "slapd.sh: ldapadd $file failed" >&2; return 1; }
    done
}

start() {
    local dir=$1 port=$2 tls=0
    case ${3:-} in
        '') ;;
        tls) tls=1 ;;
        *) die "third argument must be 'tls'" ;;
    esac
    case $port in '' | *[!0-9]*) die "bad port: $port" ;; esac
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)   # slapd and the config need absolute paths
    if [ -f "$dir/slapd.pid" ] && alive "$(cat "$dir/slapd.pid")"; then
        die "a slapd already runs for $dir (PID $(cat "$dir/slapd.pid"))"
    fi

    # DIR/loaded marks a server whose data is in: start it again as it is.
    # Anything else (a new DIR, or a start that failed) is built afresh.
    local fresh=0
    if [ ! -f "$dir/loaded" ]; then
        rm -rf "$dir/slapd.d" "$dir/db"
        build "$dir" "$tls"
        fresh=1
    fi

    local url="ldap://127.0.0.1:$port"
    local listen="$url/"
    if [ "$tls" = 1 ]; then listen="$listen ldaps://127.0.0.1:$((port + 1))/"; fi

    # -d: stay in the foreground (so $! is slapd's PID) and log to stderr;
    # level "none" logs only what slapd always logs (start, stop, errors
    # such as a busy port), where -d 0 would hide startup errors.
    "${SLAPD:-$(find_cmd slapd)}" -d none -F "$dir/slapd.d" -h "$listen" \
        </dev/null >>"$dir/slapd.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$dir/slapd.pid"

    # Ready when this slapd (not some other process on the port) has its
    # listening socket open: slapd calls listen() only after its databases
    # are open. A probe search would succeed on another server that holds
    # the port, during the moment before our slapd fails to bind and exits.
    local i
    for ((i = 0; i < 1000; i++)); do
        if ! alive "$pid"; then
            cat "$dir/slapd.log" >&2
            rm -f "$dir/slapd.pid"
            die "slapd exited during startup"
        fi
        if ss -ltnpH "sport = :$port" 2>/dev/null | grep -q "pid=$pid,"; then
            break
        fi
        sleep 0.01
    done
    if [ "$i" -ge 1000 ]; then
        kill -TERM "$pid"
        cat "$dir/slapd.log" >&2
        rm -f "$dir/slapd.pid"
        die "slapd not listening after 10 s"
    fi

    if [ "$fresh" = 1 ]; then
        if ! load "$dir" "$url"; then
            stop "$dir"
            die "test data not loaded; slapd stopped"
        fi
        touch "$dir/loaded"
    fi
    echo "slapd PID $pid on $listen (dir $dir)"
}

stop() {
    local dir=$1 pid
    [ -f "$dir/slapd.pid" ] || die "no $dir/slapd.pid"
    pid=$(cat "$dir/slapd.pid")
    dir=$(cd "$dir" && pwd -P)
    stop_daemon slapd.sh "$pid" is_our_slapd "$dir"
    rm -f "$dir/slapd.pid"
}

case "${1:-}" in
    start) [ $# -ge 3 ] || die "usage: $0 start DIR PORT [tls]"; start "$2" "$3" "${4:-}" ;;
    stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
    *) die "usage: $0 start DIR PORT [tls] | stop DIR" ;;
esac
