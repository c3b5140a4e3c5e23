# shellcheck shell=bash
# The TCP port a test or benchmark server listens on. Sourced.
#
#   unused_port [GIVEN]
#                   prints a port that no TCP socket of this network
#                   namespace uses now, in any state, picked at random below
#                   the kernel's ephemeral range (above it when the range
#                   starts low). With GIVEN (a file), never one listed there,
#                   and the port is appended to it: $(unused_port) runs in a
#                   subshell, so two picks before anything listens need it.
#                   Never bind-and-drop: a port the kernel just handed out
#                   is the next client connection's port.
#
# Why below the ephemeral range: a client connection's port, even in
# TIME-WAIT, makes a listener's bind on it fail (SO_REUSEADDR or not), and
# the suites make thousands of client connections. Seen as Postfix's "mail
# system startup failed" on a port picked among them.
# shellcheck disable=SC2120 # GIVEN is optional
unused_port() {
    local given=${1:-} first last low high used port i
    read -r first last </proc/sys/net/ipv4/ip_local_port_range || { first=32768 last=60999; }
    if [ "$first" -ge 12000 ]; then low=10000 high=$first; else low=$((last + 1)) high=65535; fi
    used=$(ss -tanH 2>/dev/null | awk '{n = split($4, a, ":"); print a[n]}')
    if [ -n "$given" ] && [ -f "$given" ]; then used+=$'\n'$(cat "$given"); fi
    for ((i = 0; i < 1000; i++)); do
        port=$((low + (RANDOM * 32768 + RANDOM) % (high - low)))
        if grep -qx "$port" <<<"$used"; then continue; fi
        if [ -n "$given" ]; then echo "$port" >>"$given"; fi
        echo "$port"
        return 0
    done
    echo "no unused TCP port in $low-$high" >&2
    return 1
}
