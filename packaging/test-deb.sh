#!/usr/bin/env bash
# Builds the Debian package with cargo-deb and checks it, without installing
# it on this machine: control fields, conffiles, maintainer scripts, every
# expected path with its mode, stripped binaries, then the package unpacked
# into a throw-away directory (dpkg-deb -x): `gatehouse check` on the shipped
# configuration, a short serve-and-load run of both shipped binaries, and the
# man pages (rendering, and every option of --help documented).
#
# Prints one line per check (`ok   ...` / `FAIL ...`), then `N passed, M failed`;
# exits 1 when a check failed. Progress notes go to standard error.
#
# Runs cargo: installs cargo-deb (pinned below) when missing and runs
# `cargo deb`, a release build with fat LTO (~3 minutes on 2 cores).
# DEB_OUT_DIR=dir keeps a copy of the built .deb (and .ddeb) in dir.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

# cargo-deb 3.8.0 needs rustc >= 1.85; built and used with rustc 1.95.
CARGO_DEB_VERSION=3.8.0

passed=0
failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
# check DESCRIPTION COMMAND...: ok when the command succeeds.
check() {
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then ok "$what"; else fail "$what"; fi
}
note() { echo "test-deb: $*" >&2; }
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

tmp=$(mktemp -d)
server_pid=
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# --- tools -------------------------------------------------------------------
# dpkg-dev: dpkg-shlibdeps for `depends = "$auto"`; binutils: strip/objcopy
# (cargo-deb) and readelf; man-db/groff-base: man pages.
declare -A need=([dpkg-shlibdeps]=dpkg-dev [objcopy]=binutils [readelf]=binutils
    [man]=man-db [groff]=groff-base)
missing=()
for cmd in "${!need[@]}"; do
    command -v "$cmd" >/dev/null || missing+=("${need[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    note "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if cargo install --list | grep -q "^cargo-deb v$CARGO_DEB_VERSION:"; then
    ok "cargo-deb $CARGO_DEB_VERSION installed"
else
    note "installing cargo-deb $CARGO_DEB_VERSION"
    start=$SECONDS
    if cargo install --locked --version "$CARGO_DEB_VERSION" cargo-deb >"$tmp/install.log" 2>&1; then
        ok "cargo-deb $CARGO_DEB_VERSION installed ($((SECONDS - start))s)"
    else
        tail -n 30 "$tmp/install.log" >&2
        fail "cargo-deb $CARGO_DEB_VERSION installed"
        finish
    fi
fi

# --- build -------------------------------------------------------------------
note "cargo deb (release build, fat LTO: a few minutes)"
start=$SECONDS
mkdir -p "$tmp/out"
if cargo deb --locked --output "$tmp/out" >"$tmp/build.log" 2>&1; then
    ok "cargo deb builds the package ($((SECONDS - start))s)"
else
    tail -n 40 "$tmp/build.log" >&2
    fail "cargo deb builds the package"
    finish
fi
debs=("$tmp"/out/gatehouse_*.deb)
if [ ${#debs[@]} -eq 1 ] && [ -f "${debs[0]}" ]; then
    deb=${debs[0]}
    ok "one package built: $(basename "$deb")"
else
    fail "one package built (found: ${debs[*]})"
    finish
fi
if [ -n "${DEB_OUT_DIR:-}" ]; then
    mkdir -p "$DEB_OUT_DIR" && cp "$tmp"/out/*.deb "$tmp"/out/*.ddeb "$DEB_OUT_DIR"/ 2>/dev/null
    note "package copied to $DEB_OUT_DIR"
fi

# --- control fields ----------------------------------------------------------
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
field() { dpkg-deb -f "$deb" "$1"; }
check "Package: gatehouse" test "$(field Package)" = gatehouse
check "Version: $version-1" test "$(field Version)" = "$version-1"
check "Architecture: $(dpkg --print-architecture)" test "$(field Architecture)" = "$(dpkg --print-architecture)"
check "Section: mail" test "$(field Section)" = mail
check "Priority: optional" test "$(field Priority)" = optional
check "Maintainer is 'Name <address>'" grep -Eq '^[^<]+ <[^>]+@[^>]+>$' <<<"$(field Maintainer)"
depends=$(field Depends)
check "Depends: libc6 (from \$auto, dpkg-shlibdeps): $depends" grep -Eq '(^|, )libc6( |,|$)' <<<"$depends"
check "Depends: adduser (postinst)" grep -Eq '(^|, )adduser( |,|$)' <<<"$depends"
# The synopsis is Cargo.toml's [package] description; cargo-deb wraps a long
# one at 79 columns, and its continuation becomes the extended description.
synopsis=$(field Description | head -n 1)
description=$(sed -n 's/^description = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
check "Description synopsis is the whole [package] description, one line <= 80 chars" \
    test "$synopsis" = "$description" -a "${#synopsis}" -le 80
check "Description has an extended text" test "$(field Description | wc -l)" -gt 3
check "Installed-Size is set" grep -Eq '^[0-9]+$' <<<"$(field Installed-Size)"

# --- control members: conffiles, maintainer scripts ---------------------------
dpkg-deb -e "$deb" "$tmp/DEBIAN"
check "conffiles lists exactly /etc/gatehouse/gatehouse.toml" \
    test "$(cat "$tmp/DEBIAN/conffiles" 2>/dev/null)" = /etc/gatehouse/gatehouse.toml
for script in postinst prerm postrm; do
    check "maintainer script $script present and executable" test -x "$tmp/DEBIAN/$script"
    check "maintainer script $script: sh syntax" sh -n "$tmp/DEBIAN/$script"
    check "maintainer script $script: #DEBHELPER# replaced" bash -c "! grep -q '#DEBHELPER#' '$tmp/DEBIAN/$script'"
done
postinst=$tmp/DEBIAN/postinst
# cargo-deb replaces every #DEBHELPER#, also one in a comment: each fragment once.
for script in postinst:2 prerm:1 postrm:2; do
    check "${script%:*}: ${script#*:} systemd fragment(s), each inserted once" \
        test "$(grep -c '^# Automatically added by cargo-deb' "$tmp/DEBIAN/${script%:*}")" -eq "${script#*:}"
done
check "postinst creates the gatehouse system user and group" \
    grep -q 'adduser --system --quiet --group' "$postinst"
check "postinst: user without home (--no-create-home --home /nonexistent)" \
    grep -q -- '--no-create-home --home /nonexistent' "$postinst"
check "postinst: /etc/gatehouse root:gatehouse 0750 (dpkg-statoverride)" \
    grep -q 'dpkg-statoverride --quiet --update --add root gatehouse 0750 /etc/gatehouse' "$postinst"
check "postinst enables gatehouse.service (deb-systemd-helper)" grep -q 'deb-systemd-helper enable gatehouse.service' "$postinst"
# shellcheck disable=SC2016 # a literal $ in the generated script
check "postinst starts or restarts gatehouse.service" grep -q 'deb-systemd-invoke $_dh_action gatehouse.service' "$postinst"
check "postinst creates the user before starting the service" \
    test "$(grep -n 'adduser --system' "$postinst" | head -n 1 | cut -d: -f1)" -lt \
    "$(grep -n 'deb-systemd-invoke' "$postinst" | head -n 1 | cut -d: -f1)"
check "prerm stops gatehouse.service on removal" grep -q 'deb-systemd-invoke stop gatehouse.service' "$tmp/DEBIAN/prerm"
check "postrm removes the statoverride on purge" grep -q 'dpkg-statoverride --quiet --remove /etc/gatehouse' "$tmp/DEBIAN/postrm"
check "postrm keeps the gatehouse user (no deluser)" bash -c "! grep -Eq 'deluser|userdel' '$tmp/DEBIAN/postrm'"

# --- data: paths and modes ----------------------------------------------------
# "mode owner path" per entry, without the leading "./".
dpkg-deb -c "$deb" | awk '{ p = $6; sub(/^\.\//, "", p); print $1, $2, p }' >"$tmp/contents"
entry() { awk -v p="$1" '$3 == p' "$tmp/contents"; }
expect() { # expect PATH MODE-REGEX
    local e
    e=$(entry "$1")
    if [ -z "$e" ]; then
        fail "/$1 in the package"
    elif grep -Eq "^($2) (root/root|0/0) " <<<"$e"; then
        ok "/$1 ${e%% *} root/root"
    else
        fail "/$1 mode/owner: $e (want $2 root/root)"
    fi
}
expect usr/bin/gatehouse '-rwxr-xr-x'
expect usr/bin/gatehouse-load '-rwxr-xr-x'
expect etc/gatehouse/gatehouse.toml '-rw-r--r--|-rw-r-----'
expect usr/share/man/man8/gatehouse.8.gz '-rw-r--r--'
expect usr/share/man/man1/gatehouse-load.1.gz '-rw-r--r--'
expect usr/share/doc/gatehouse/README.md '-rw-r--r--'
expect usr/share/doc/gatehouse/copyright '-rw-r--r--'
unit=$(awk '$3 ~ /(^|\/)lib\/systemd\/system\/gatehouse\.service$/ { print $3 }' "$tmp/contents")
if [ "$(wc -w <<<"$unit")" -eq 1 ]; then
    expect "$unit" '-rw-r--r--'
else
    fail "one gatehouse.service unit in the package (found: ${unit:-none})"
fi
for mta in postfix sendmail; do
    shipped=0
    for f in packaging/"$mta"/*; do
        [ -f "$f" ] || continue
        shipped=$((shipped + 1))
        expect "usr/share/doc/gatehouse/examples/$mta/$(basename "$f")" '-rw-r--r--'
    done
    check "packaging/$mta/ has example files to ship ($shipped)" test "$shipped" -gt 0
done
check "every directory is drwxr-xr-x root/root" \
    bash -c "! awk '\$1 ~ /^d/ && (\$1 != \"drwxr-xr-x\" || \$2 !~ /^(root\/root|0\/0)$/)' '$tmp/contents' | grep -q ."
check "nothing setuid/setgid/world-writable" \
    bash -c "! awk '\$1 ~ /[sS]/ || \$1 ~ /^.......[-r]w/' '$tmp/contents' | grep -q ."
check "nothing outside usr/bin, etc/gatehouse, the unit, usr/share/{man,doc/gatehouse}" \
    bash -c "! awk '\$1 !~ /^d/ && \$3 !~ /^(usr\/bin\/gatehouse(-load)?|etc\/gatehouse\/|(usr\/)?lib\/systemd\/system\/gatehouse\.service|usr\/share\/man\/man[18]\/|usr\/share\/doc\/gatehouse\/)/' '$tmp/contents' | grep -q ."

# --- unpacked into a throw-away root -----------------------------------------
root=$tmp/root
dpkg-deb -x "$deb" "$root"
check "shipped configuration is conf/gatehouse.toml" cmp "$root/etc/gatehouse/gatehouse.toml" conf/gatehouse.toml
check "shipped README.md is the repository's" cmp "$root/usr/share/doc/gatehouse/README.md" README.md
check "shipped unit is packaging/systemd/gatehouse.service" cmp "$root/$unit" packaging/systemd/gatehouse.service
for f in "$root"/usr/share/doc/gatehouse/examples/*/*; do
    [ -f "$f" ] || continue
    rel=${f#"$root"/usr/share/doc/gatehouse/examples/}
    check "shipped example $rel is packaging/$rel" cmp "$f" "packaging/$rel"
done
check "unit: ExecStart runs the packaged /usr/bin/gatehouse on /etc/gatehouse/gatehouse.toml" \
    grep -qx 'ExecStart=/usr/bin/gatehouse run --config /etc/gatehouse/gatehouse.toml' "$root/$unit"
check "unit: User=gatehouse, Group=gatehouse" \
    bash -c "grep -qx 'User=gatehouse' '$root/$unit' && grep -qx 'Group=gatehouse' '$root/$unit'"
check "unit: RuntimeDirectory=gatehouse" grep -qx 'RuntimeDirectory=gatehouse' "$root/$unit"
for b in gatehouse gatehouse-load; do
    # (.debug_gdb_scripts is an allocated section Rust always keeps.)
    check "usr/bin/$b is stripped (no .debug_info/.debug_line, a .gnu_debuglink)" \
        bash -c "readelf -SW '$root/usr/bin/$b' >'$tmp/sections' && grep -q ' \.gnu_debuglink ' '$tmp/sections' && ! grep -Eq ' \.debug_(info|line) ' '$tmp/sections'"
done
ddebs=("$tmp"/out/gatehouse-dbgsym_*.ddeb)
check "debug symbols in gatehouse-dbgsym (.ddeb, usr/lib/debug/.build-id)" \
    bash -c "dpkg-deb -c '${ddebs[0]}' | grep -q 'usr/lib/debug/.build-id/.*\.debug$'"

gh=$root/usr/bin/gatehouse
conf=$root/etc/gatehouse/gatehouse.toml
check "extracted gatehouse --version is $version" test "$("$gh" --version)" = "gatehouse $version"
check "extracted gatehouse check --config <extracted gatehouse.toml> exits 0" "$gh" check --config "$conf"
check "extracted gatehouse explain (README example) exits 0 and refuses the relay" \
    bash -c "'$gh' explain -c '$conf' --listener submission --login bob --from bob@example.com \
        --rcpt x@elsewhere.example all-staff@example.com | grep -q 'rule=relay_group'"

# Serve on a unix socket (a copy of the shipped configuration, the milter's
# listen changed; the policy service stays off)
# and drive it with the shipped load generator; then a graceful stop.
sock=$tmp/gatehouse.sock
sed "0,/^listen = /s|^listen = .*|listen = [\"unix:$sock\"]|" "$conf" >"$tmp/serve.toml"
if grep -q "unix:$sock" "$tmp/serve.toml"; then
    "$gh" run --config "$tmp/serve.toml" 2>"$tmp/serve.log" &
    server_pid=$!
    for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
    check "extracted gatehouse run listens on unix:$(basename "$sock")" test -S "$sock"
    "$root/usr/bin/gatehouse-load" --socket "unix:$sock" --concurrency 4 --transactions 200 >"$tmp/load.out" 2>&1
    check "extracted gatehouse-load: 200 transactions, 0 errors" grep -q 'RESULT .*transactions=200 accepted=200 rejected=0 tempfailed=0 errors=0$' "$tmp/load.out"
    kill -TERM "$server_pid"
    wait "$server_pid"
    status=$?
    server_pid=
    check "SIGTERM: gatehouse exits 0 and removes its socket" test "$status" -eq 0 -a ! -e "$sock"
else
    fail "conf/gatehouse.toml has a 'listen = ...' line to point at a test socket"
fi

# --- man pages ---------------------------------------------------------------
render() { MANWIDTH=80 man -l "$1" 2>/dev/null; }
for page in usr/share/man/man8/gatehouse.8.gz usr/share/man/man1/gatehouse-load.1.gz; do
    name=$(basename "$page" .gz)
    check "man -l $name renders (NAME, SYNOPSIS)" \
        bash -c "MANWIDTH=80 man -l '$root/$page' 2>/dev/null | grep -q '^NAME' && MANWIDTH=80 man -l '$root/$page' | grep -q '^SYNOPSIS'"
    check "$name: no groff warnings" bash -c "zcat '$root/$page' | groff -man -ww -z -Tutf8 2>&1 | { ! grep -q .; }"
done
render "$root/usr/share/man/man8/gatehouse.8.gz" >"$tmp/gatehouse.8.txt"
render "$root/usr/share/man/man1/gatehouse-load.1.gz" >"$tmp/gatehouse-load.1.txt"
for cmd in "" run check explain lookup; do
    for opt in $("$gh" $cmd --help | grep -oE -- '--[a-z][a-z-]*' | sort -u); do
        check "gatehouse.8 documents ${cmd:-gatehouse} $opt" grep -q -- "$opt" "$tmp/gatehouse.8.txt"
    done
done
for sub in run check explain lookup; do
    check "gatehouse.8 SYNOPSIS has gatehouse $sub" \
        bash -c "sed -n '/^SYNOPSIS/,/^DESCRIPTION/p' '$tmp/gatehouse.8.txt' | grep -q 'gatehouse.*$sub'"
done
for opt in $("$root/usr/bin/gatehouse-load" --help | grep -oE -- '--[a-z][a-z-]*' | sort -u); do
    check "gatehouse-load.1 documents $opt" grep -q -- "$opt" "$tmp/gatehouse-load.1.txt"
done

finish
