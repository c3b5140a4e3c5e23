# shellcheck shell=bash
# Helpers shared by the scripts that run the tests' throw-away directory
# servers (tests/ldap/slapd.sh, tests/ad/samba.sh). Sourced; the caller
# defines die MESSAGE (prints and exits).
#
#   find_cmd NAME               NAME from PATH or the usual sbin folders
#   alive PID                   PID is a live process (a zombie is not)
#   stop_daemon NAME PID IS_OURS DIR
#                               SIGTERM to PID when `IS_OURS PID DIR` says it is
#                               the server of DIR (a reused PID is never
#                               killed), SIGKILL after 10 s
#   make_test_tls DIR CA_CN SERVER_CN SAN
#                               a test CA (DIR/ca.pem, DIR/ca.key) and a server
#                               certificate for SAN (DIR/server.pem, .key)

# A command from PATH or the usual sbin folders (not on a user's PATH on Debian).
find_cmd() {
    local name=$1 d
    if command -v "$name" 2>/dev/null; then return 0; fi
    for d in /usr/sbin /sbin /usr/local/sbin /usr/local/libexec /usr/libexec \
        /usr/local/samba/sbin /usr/local/samba/bin; do
        if [ -x "$d/$name" ]; then echo "$d/$name"; return 0; fi
    done
    die "$name not found (scripts/install-test-deps.sh installs it)"
}

# True while PID is a live process (a zombie counts as exited: when the
# shell that started the server is gone, init reaps it only some time later).
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }          # the state letter follows "(comm) "
    [ "${stat%% *}" != Z ]
}

stop_daemon() {
    local name=$1 pid=$2 is_ours=$3 dir=$4 i
    alive "$pid" || return 0
    "$is_ours" "$pid" "$dir" || die "PID $pid is not the server of $dir; not killing it"
    kill -TERM "$pid"
    for ((i = 0; i < 1000; i++)); do
        alive "$pid" || return 0
        sleep 0.01
    done
    echo "$name: PID $pid still running after 10 s, sending SIGKILL" >&2
    kill -KILL "$pid"
}

make_test_tls() {
    local dir=$1 ca_cn=$2 server_cn=$3 san=$4
    # EC keys: instant to generate.
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 3650 -subj "/CN=$ca_cn" 2>/dev/null
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$dir/server.key" -out "$dir/server.csr" -subj "/CN=$server_cn" 2>/dev/null
    cat >"$dir/server.ext" <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $san
EXT
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -set_serial 2 -days 3650 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
    # Servers (Samba among them) refuse a key file that others can read.
    chmod 600 "$dir/ca.key" "$dir/server.key"
}
