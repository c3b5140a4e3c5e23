#!/usr/bin/env bash
# Run a throw-away Samba Active Directory domain controller with gatehouse's
# AD test directory (realm EXAMPLE.COM, base DN DC=example,DC=com).
#
#   tests/ad/samba.sh start DIR
#   tests/ad/samba.sh stop DIR
#   tests/ad/samba.sh modify DIR [LDBMODIFY-OPTION...] < LDIF
#
# Samba's LDAP server always binds ports 389, 636, 3268 and 3269 (there is no
# option to move them), so run this inside a private network namespace that
# holds only loopback:
#   unshare --net bash -c 'ip link set lo up; tests/ad/samba.sh start DIR; ...'
#
# start:  provisions a new domain in DIR/dc (anything from an earlier start is
#         removed first), writes a test CA (DIR/ca.pem) and a server
#         certificate for 127.0.0.1 / dc1.example.com / localhost, runs samba
#         (LDAP service only, one process) in the background without
#         detaching (its PID in DIR/samba.pid, its output in DIR/samba.log),
#         waits until it answers, loads the test data with ldbadd/ldbmodify
#         and writes DIR/ad.env. When a step fails after samba started,
#         samba is stopped again.
# stop:   sends SIGTERM to the PID in DIR/samba.pid, waits for it to exit
#         (SIGKILL after 10 s) and removes the pid file.
# modify: applies an LDIF from stdin to the running DC with ldbmodify on its
#         sam.ldb (extra options go to ldbmodify, e.g.
#         --option="dsdb:schema update allowed=true" for schema changes).
#
# DIR/ad.env holds shell-sourceable KEY=VALUE lines (no quoting: DIR must be
# a plain path): AD_URL, AD_LDAPS_URL, AD_BASE_DN, AD_CA_FILE, AD_BIND_DN
# (svc-gatehouse's UPN), AD_BIND_PASSWORD_FILE (its random password, no
# newline), AD_ADMIN_DN, AD_ADMIN_PASSWORD (Administrator), AD_USER_PASSWORD
# (the one password of alice, bob, carol, dave, grace, erin and ceo; the bulk
# users have none), AD_PEOPLE_DN, AD_GROUPS_DN (both OU=Mail), AD_BULK_DN,
# AD_REALM, AD_DOMAIN, AD_SAM_LDB, AD_SMB_CONF. Passwords are new on each
# start. Try:
#   . DIR/ad.env
#   ldapsearch -x -H "$AD_URL" -D "$AD_BIND_DN" -y "$AD_BIND_PASSWORD_FILE" \
#       -b "$AD_BASE_DN" '(member:1.2.840.113556.1.4.1941:=CN=bob,OU=Mail,DC=example,DC=com)' cn
#   LDAPTLS_CACERT="$AD_CA_FILE" ldapsearch -x -H "$AD_LDAPS_URL" ...
# (LDAPNOINIT=1 makes ldapsearch ignore LDAPTLS_CACERT too, and OpenLDAP's
# client checks ldaps://localhost against the machine's hostname: use
# 127.0.0.1. A subtree search from the base DN also returns a search
# reference to CN=Configuration.)
#
# Test data (other tests depend on these names):
#   OU=Mail: users alice bob carol dave (disabled) grace erin ceo, helen
#     (no explicit UPN) and ivan (whose mail is helen's implicit UPN), security
#     groups Internet Mail Users, Sales, Staff, Contractors, Relay Deny,
#     Engineering, Full-Time Employees, Managers, Big Group, distribution
#     groups All Staff and Board. bob is in Internet Mail Users through
#     Sales -> Staff; grace is in Managers through Engineering ->
#     Full-Time Employees.
#   OU=Bulk: user0001 .. user1600, all members of Big Group (with alice).
#   CN=Users: svc-gatehouse, the service account (a plain domain user).
#   Exchange delivery-restriction attributes (authOrig, unauthOrig,
#     dLMemSubmitPerms, dLMemRejectPerms, msExchRequireAuthToSendTo) are
#     added to the schema and set on Board and ceo.
#
# Needs samba, samba-tool, ldbadd, ldbmodify, ldbsearch, ldapsearch
# (ldap-utils), openssl, iconv, ss (iproute2). Environment: SAMBA and
# SAMBA_TOOL override the binaries.
set -euo pipefail

REALM=EXAMPLE.COM
DOMAIN=EXAMPLE
BASE_DN='DC=example,DC=com'
SCHEMA_DN="CN=Schema,CN=Configuration,$BASE_DN"
MAIL_DN="OU=Mail,$BASE_DN"
BULK_DN="OU=Bulk,$BASE_DN"
BULK_USERS=1600
ADMIN_DN="CN=Administrator,CN=Users,$BASE_DN"
SVC_DN="CN=svc-gatehouse,CN=Users,$BASE_DN"

# groupType values. Security groups are global groups (what samba-tool makes
# by default); distribution groups are universal, as Exchange requires for
# mail-enabled groups. The high bit (0x80000000) marks a security group.
GT_SECURITY_GLOBAL=-2147483646
GT_DISTRIBUTION_UNIVERSAL=8

# userAccountControl: 512 NORMAL_ACCOUNT (needs a password, set below),
# 544 = 512 | PASSWD_NOTREQD for the password-less bulk users, 514 = 512 |
# ACCOUNTDISABLE. An account added over LDAP/ldb without this attribute is
# created disabled.
UAC_NORMAL=512
UAC_NOPASSWD=544
UAC_DISABLED=514

die() { echo "samba.sh: $*" >&2; exit 1; }
# shellcheck source=tests/lib/daemon.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/daemon.sh"

# True when PID is a samba serving DIR (guards against a reused PID). Samba
# overwrites its command line ("samba: root process"), so look for a file
# under DIR among its open descriptors instead (it keeps sam.ldb open).
is_our_samba() {
    local pid=$1 dir=$2 fd target
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = samba ] || return 1
    for fd in /proc/"$pid"/fd/*; do
        target=$(readlink "$fd" 2>/dev/null) || continue
        case $target in "$dir"/*) return 0 ;; esac
    done
    return 1
}

# A random password that meets AD's default complexity rules (three of:
# upper case, lower case, digit, other) and contains no account name.
random_password() {
    printf 'Gh-%s' "$(openssl rand -hex 12)"
}

# The unicodePwd value for PASSWORD: the password in double quotes, UTF-16LE,
# base64 (for an LDIF "unicodePwd:: " line). Over ldb on the local sam.ldb
# this needs no encrypted connection, unlike over LDAP.
unicode_pwd() {
    printf '"%s"' "$1" | iconv -f UTF-8 -t UTF-16LE | base64 -w0
}

# Samba's own autogenerated certificate names only DC1.example.com (no
# subjectAltName), which a loopback-only namespace cannot resolve and a
# verifying client refuses for 127.0.0.1.
make_tls() {
    make_test_tls "$1" 'gatehouse AD test CA' dc1.example.com \
        'IP:127.0.0.1, DNS:dc1.example.com, DNS:localhost'
    cp "$1/ca.pem" "$2"
}

provision() {
    local dir=$1 adminpw=$2
    # --dns-backend=NONE: no DNS server (and no DNS zone partitions to
    # build), which also keeps the provision at a few seconds. The
    # interfaces options end up in smb.conf and keep samba on loopback.
    "${SAMBA_TOOL:-$(find_cmd samba-tool)}" domain provision \
        --targetdir="$dir/dc" --realm="$REALM" --domain="$DOMAIN" \
        --host-name=dc1 --server-role=dc --dns-backend=NONE \
        --adminpass="$adminpw" --host-ip=127.0.0.1 \
        --option="interfaces=lo" --option="bind interfaces only=yes" \
        >"$dir/provision.log" 2>&1 \
        || { tail -n 20 "$dir/provision.log" >&2; die "samba-tool domain provision failed"; }

    # The generated [global] starts every AD service and logs to
    # /var/log/samba; replace those lines and add ours right after
    # "[global]". Only the LDAP service runs: no kdc, winbindd, dns, smb.
    # Simple binds over plain ldap:// are refused unless strong auth is
    # off. pid directory: the default /run/samba/samba.pid would collide
    # with any other instance on the machine.
    local conf=$dir/dc/etc/smb.conf
    sed -i -E '/^[[:space:]]*(server services|log file|logging|max log size|panic action|pid directory)[[:space:]]*=/d' "$conf"
    sed -i "/^\[global\]/a\\
	server services = ldap\\
	pid directory = $dir/run\\
	log file = $dir/log/samba.%m\\
	logging = file\\
	ldap server require strong auth = no\\
	tls enabled = yes\\
	tls keyfile = $dir/tls/server.key\\
	tls certfile = $dir/tls/server.pem\\
	tls cafile = $dir/ca.pem" "$conf"
}

# The Exchange delivery-restriction attributes, as Exchange's schema
# defines them (Exchange Server 2003 SDK, "ms-Exch-Auth-Orig Attribute"
# etc.): attributeSyntax 2.5.5.7 with oMObjectClass 2.6.6.1.2.5.11.29
# (Object(OR-Name), base64 VgYBAgULHQ==), which Samba stores and returns as
# plain DNs, and Exchange's linkIDs, so they are linked attributes like
# member (values must name existing objects and follow renames).
# schemaIDGUIDs are left for Samba to generate.
# msExchRequireAuthToSendTo: Exchange's published attributeID could not be
# confirmed, so it uses an OID under a private arc (1.3.6.1.4.1.99999.1)
# rather than a guessed one; clients find attributes by name, not by OID.
# Fields: lDAPDisplayName cn attributeID attributeSyntax oMSyntax
# oMObjectClass(base64 or -) isSingleValued linkID(or -)
exchange_attributes() {
    cat <<'EOF'
authOrig ms-Exch-Auth-Orig 1.2.840.113556.1.2.129 2.5.5.7 127 VgYBAgULHQ== FALSE 110
dLMemSubmitPerms ms-Exch-DL-Mem-Submit-Perms 1.2.840.113556.1.2.144 2.5.5.7 127 VgYBAgULHQ== FALSE 112
unauthOrig ms-Exch-Unauth-Orig 1.2.840.113556.1.2.221 2.5.5.7 127 VgYBAgULHQ== FALSE 114
dLMemRejectPerms ms-Exch-DL-Mem-Reject-Perms 1.2.840.113556.1.2.47 2.5.5.7 127 VgYBAgULHQ== FALSE 116
msExchRequireAuthToSendTo ms-Exch-Require-Auth-To-Send-To 1.3.6.1.4.1.99999.1.1 2.5.5.8 1 - TRUE -
EOF
}

# Extends the schema with the attributes above, adding only what Samba's
# schema lacks (a later Samba might ship some of them), and lets users and
# groups hold them. Schema changes need "dsdb:schema update allowed";
# schemaUpdateNow on the root DSE makes the running samba (and later ldb
# tools) load the new schema at once.
extend_schema() {
    local dir=$1
    local sam=$dir/dc/private/sam.ldb
    local opt='--option=dsdb:schema update allowed=true'
    local name cn oid syntax omsyntax omclass single link filter='' have
    while read -r name _; do filter="$filter(lDAPDisplayName=$name)"; done < <(exchange_attributes)
    have=$(ldbsearch -H "$sam" -b "$SCHEMA_DN" -s one "(|$filter)" lDAPDisplayName \
        | sed -n 's/^lDAPDisplayName: //p')

    : >"$dir/schema.ldif"
    while read -r name cn oid syntax omsyntax omclass single link; do
        if grep -qixF "$name" <<<"$have"; then continue; fi
        {
            echo "dn: CN=$cn,$SCHEMA_DN"
            echo "objectClass: top"
            echo "objectClass: attributeSchema"
            echo "cn: $cn"
            echo "lDAPDisplayName: $name"
            echo "attributeID: $oid"
            echo "attributeSyntax: $syntax"
            echo "oMSyntax: $omsyntax"
            if [ "$omclass" != - ]; then echo "oMObjectClass:: $omclass"; fi
            echo "isSingleValued: $single"
            if [ "$link" != - ]; then echo "linkID: $link"; fi
            echo "searchFlags: 16"
            echo
        } >>"$dir/schema.ldif"
    done < <(exchange_attributes)
    if [ -s "$dir/schema.ldif" ]; then
        ldbadd -H "$sam" "$opt" "$dir/schema.ldif" >>"$dir/load.log" 2>&1 \
            || { tail -n 5 "$dir/load.log" >&2; echo "samba.sh: ldbadd of the schema attributes failed" >&2; return 1; }
    fi

    local class values
    : >"$dir/schema-classes.ldif"
    for class in User Group; do
        values=$(ldbsearch -H "$sam" -b "CN=$class,$SCHEMA_DN" -s base mayContain \
            | sed -n 's/^mayContain: //p')
        {
            echo "dn: CN=$class,$SCHEMA_DN"
            echo "changetype: modify"
            echo "add: mayContain"
            while read -r name _; do
                if ! grep -qixF "$name" <<<"$values"; then echo "mayContain: $name"; fi
            done < <(exchange_attributes)
            echo "-"
            echo
        } >>"$dir/schema-classes.ldif"
    done
    # A modify with an empty "add:" is an error: drop those blocks.
    awk 'BEGIN { RS = ""; ORS = "\n\n" } /mayContain: /' "$dir/schema-classes.ldif" >"$dir/schema-classes.tmp"
    mv "$dir/schema-classes.tmp" "$dir/schema-classes.ldif"
    printf 'dn:\nchangetype: modify\nadd: schemaUpdateNow\nschemaUpdateNow: 1\n' >>"$dir/schema-classes.ldif"
    ldbmodify -H "$sam" "$opt" "$dir/schema-classes.ldif" >>"$dir/load.log" 2>&1 \
        || { tail -n 5 "$dir/load.log" >&2; echo "samba.sh: ldbmodify of the schema classes failed" >&2; return 1; }
}

# One named user. Args: cn mail uac password-or-empty [extra LDIF lines...]
user_entry() {
    local cn=$1 mail=$2 uac=$3 pw=$4 line
    shift 4
    echo "dn: CN=$cn,$MAIL_DN"
    echo "objectClass: user"
    echo "sAMAccountName: $cn"
    echo "userAccountControl: $uac"
    if [ -n "$mail" ]; then echo "mail: $mail"; fi
    if [ -n "$pw" ]; then echo "unicodePwd:: $(unicode_pwd "$pw")"; fi
    for line in "$@"; do echo "$line"; done
    echo
}

# One group. Args: cn groupType [extra LDIF lines (members, mail...)...]
group_entry() {
    local cn=$1 type=$2 line
    shift 2
    echo "dn: CN=$cn,$MAIL_DN"
    echo "objectClass: group"
    echo "sAMAccountName: $cn"
    echo "groupType: $type"
    for line in "$@"; do echo "$line"; done
    echo
}

# The whole test directory as one LDIF, for one ldbadd (a single
# transaction: ~3 s for the 1,600 bulk users, where one samba-tool call per
# user takes about a second each). Entries come in dependency order: member
# and the Exchange DN attributes must name objects that already exist.
gen_data() {
    local svcpw=$1 userpw=$2 i n
    local m=$MAIL_DN
    printf 'dn: %s\nobjectClass: organizationalUnit\nou: Mail\n\n' "$MAIL_DN"
    printf 'dn: %s\nobjectClass: organizationalUnit\nou: Bulk\n\n' "$BULK_DN"

    # The service account: an ordinary domain user in CN=Users, like
    # "samba-tool user create" makes it.
    echo "dn: $SVC_DN"
    echo "objectClass: user"
    echo "sAMAccountName: svc-gatehouse"
    echo "userPrincipalName: svc-gatehouse@example.com"
    echo "userAccountControl: $UAC_NORMAL"
    echo "unicodePwd:: $(unicode_pwd "$svcpw")"
    echo

    # alice's UPN is deliberately not her mail address.
    user_entry alice alice@example.com "$UAC_NORMAL" "$userpw" \
        "userPrincipalName: alice@corp.example.com" "displayName: Alice Smith" \
        "givenName: Alice" "sn: Smith" \
        "proxyAddresses: SMTP:alice@example.com" \
        "proxyAddresses: smtp:a.smith@example.com" \
        "proxyAddresses: smtp:alice.smith@sales.example.com" \
        "proxyAddresses: X500:/o=Example/ou=Exchange Administrative Group/cn=Recipients/cn=alice" \
        "proxyAddresses: SIP:alice.voice@example.com"
    user_entry bob bob@example.com "$UAC_NORMAL" "$userpw" \
        "userPrincipalName: bob@example.com" "displayName: Bob" \
        "proxyAddresses: SMTP:bob@example.com" "proxyAddresses: smtp:robert@example.com"
    user_entry carol carol@example.com "$UAC_NORMAL" "$userpw" \
        "userPrincipalName: carol@example.com" "displayName: Carol" \
        "proxyAddresses: SMTP:carol@example.com"
    user_entry dave dave@example.com "$UAC_DISABLED" "$userpw" \
        "userPrincipalName: dave@example.com" "displayName: Dave" \
        "proxyAddresses: SMTP:dave@example.com"
    user_entry grace grace@example.com "$UAC_NORMAL" "$userpw" \
        "userPrincipalName: grace@example.com" "displayName: Grace" \
        "proxyAddresses: SMTP:grace@example.com"
    user_entry erin erin@example.com "$UAC_NORMAL" "$userpw" \
        "userPrincipalName: erin@example.com" "displayName: Erin" \
        "proxyAddresses: SMTP:erin@example.com"
    # helen has no explicit UPN: AD still takes helen@example.com (her
    # sAMAccountName in the domain's DNS name, the "implicit UPN") as her
    # login, and that is ivan's mail address: a login no one can be sure of.
    user_entry helen h.hill@example.com "$UAC_NORMAL" "$userpw" \
        "displayName: Helen Hill" "proxyAddresses: SMTP:h.hill@example.com"
    user_entry ivan helen@example.com "$UAC_NORMAL" "$userpw" \
        "userPrincipalName: ivan@example.com" "displayName: Ivan" \
        "proxyAddresses: SMTP:helen@example.com"
    # ceo: only alice may send to the CEO, carol never (authOrig/unauthOrig).
    user_entry ceo ceo@example.com "$UAC_NORMAL" "$userpw" \
        "userPrincipalName: ceo@example.com" "displayName: Chief Executive" \
        "proxyAddresses: SMTP:ceo@example.com" "proxyAddresses: smtp:chief@example.com" \
        "authOrig: CN=alice,$m" "unauthOrig: CN=carol,$m"

    for ((i = 1; i <= BULK_USERS; i++)); do
        printf -v n 'user%04d' "$i"
        printf 'dn: CN=%s,%s\nobjectClass: user\nsAMAccountName: %s\nuserAccountControl: %s\nmail: %s@example.com\nproxyAddresses: SMTP:%s@example.com\n\n' \
            "$n" "$BULK_DN" "$n" "$UAC_NOPASSWD" "$n" "$n"
    done

    # Innermost groups first.
    group_entry Sales "$GT_SECURITY_GLOBAL" "member: CN=bob,$m"
    group_entry Staff "$GT_SECURITY_GLOBAL" "member: CN=Sales,$m"
    group_entry "Internet Mail Users" "$GT_SECURITY_GLOBAL" \
        "member: CN=alice,$m" "member: CN=dave,$m" "member: CN=Staff,$m"
    group_entry "All Staff" "$GT_DISTRIBUTION_UNIVERSAL" "member: CN=Staff,$m" \
        "mail: all-staff@example.com" \
        "proxyAddresses: SMTP:all-staff@example.com" "proxyAddresses: smtp:everyone@example.com"
    group_entry Contractors "$GT_SECURITY_GLOBAL" "member: CN=carol,$m"
    group_entry "Relay Deny" "$GT_SECURITY_GLOBAL" "member: CN=Contractors,$m"
    group_entry Engineering "$GT_SECURITY_GLOBAL" "member: CN=grace,$m"
    group_entry "Full-Time Employees" "$GT_SECURITY_GLOBAL" "member: CN=Engineering,$m"
    group_entry Managers "$GT_SECURITY_GLOBAL" \
        "member: CN=erin,$m" "member: CN=Full-Time Employees,$m"
    # Board: only authenticated senders who are (transitive) members of
    # Managers may send; members of Contractors may not.
    group_entry Board "$GT_DISTRIBUTION_UNIVERSAL" "member: CN=erin,$m" \
        "mail: board@example.com" \
        "proxyAddresses: SMTP:board@example.com" "proxyAddresses: smtp:directors@example.com" \
        "msExchRequireAuthToSendTo: TRUE" \
        "dLMemSubmitPerms: CN=Managers,$m" "dLMemRejectPerms: CN=Contractors,$m"

    # More than 1,500 members: AD's default MaxValRange, past which a
    # Windows DC answers "member" in ranges (Samba returns all of them).
    echo "dn: CN=Big Group,$m"
    echo "objectClass: group"
    echo "sAMAccountName: Big Group"
    echo "groupType: $GT_SECURITY_GLOBAL"
    echo "member: CN=alice,$m"
    for ((i = 1; i <= BULK_USERS; i++)); do
        printf 'member: CN=user%04d,%s\n' "$i" "$BULK_DN"
    done
    echo
}

load() {
    local dir=$1 svcpw userpw
    local sam=$dir/dc/private/sam.ldb
    extend_schema "$dir" || return 1
    svcpw=$(random_password)
    userpw=$(random_password)
    # No trailing newline: "ldapsearch -y" sends the file's bytes as they are.
    (umask 077 && printf '%s' "$svcpw" >"$dir/svc.secret")
    (umask 077 && printf '%s' "$userpw" >"$dir/user.secret")
    gen_data "$svcpw" "$userpw" >"$dir/data.ldif"
    ldbadd -H "$sam" "$dir/data.ldif" >>"$dir/load.log" 2>&1 \
        || { tail -n 5 "$dir/load.log" >&2; echo "samba.sh: ldbadd of the test data failed" >&2; return 1; }
}

# Checks that the data went in as intended, through the running samba.
check() {
    local dir=$1 out disabled
    # Only dave is disabled (bit 0x2), among all users we made.
    disabled=$(LDAPNOINIT=1 ldapsearch -x -LLL -o ldif-wrap=no -H ldap://127.0.0.1 \
        -D "$ADMIN_DN" -w "$(cat "$dir/admin.secret")" -b "$BASE_DN" \
        '(&(objectCategory=person)(objectClass=user)(userAccountControl:1.2.840.113556.1.4.803:=2)(|(mail=*)(sAMAccountName=svc-gatehouse)))' \
        sAMAccountName 2>>"$dir/load.log" | sed -n 's/^sAMAccountName: //p') \
        || { echo "samba.sh: search for disabled users failed" >&2; return 1; }
    [ "$disabled" = dave ] || { echo "samba.sh: disabled users are '$disabled', expected only dave" >&2; return 1; }
    # The service account binds by UPN over plain LDAP and can read what
    # gatehouse needs (tokenGroups only in a base-scope search).
    out=$(LDAPNOINIT=1 ldapsearch -x -LLL -H ldap://127.0.0.1 \
        -D svc-gatehouse@example.com -y "$dir/svc.secret" \
        -b "CN=bob,$MAIL_DN" -s base memberOf proxyAddresses tokenGroups 2>>"$dir/load.log") \
        || { echo "samba.sh: bind or search as svc-gatehouse failed" >&2; return 1; }
    local a
    for a in memberOf proxyAddresses tokenGroups; do
        grep -q "^$a:" <<<"$out" || { echo "samba.sh: svc-gatehouse cannot read $a of bob" >&2; return 1; }
    done
}

write_env() {
    local dir=$1
    cat >"$dir/ad.env.tmp" <<EOF
AD_URL=ldap://127.0.0.1
AD_LDAPS_URL=ldaps://127.0.0.1
AD_BASE_DN=$BASE_DN
AD_REALM=$REALM
AD_DOMAIN=$DOMAIN
AD_CA_FILE=$dir/ca.pem
AD_BIND_DN=svc-gatehouse@example.com
AD_BIND_PASSWORD_FILE=$dir/svc.secret
AD_ADMIN_DN=$ADMIN_DN
AD_ADMIN_PASSWORD=$(cat "$dir/admin.secret")
AD_USER_PASSWORD=$(cat "$dir/user.secret")
AD_PEOPLE_DN=$MAIL_DN
AD_GROUPS_DN=$MAIL_DN
AD_BULK_DN=$BULK_DN
AD_SAM_LDB=$dir/dc/private/sam.ldb
AD_SMB_CONF=$dir/dc/etc/smb.conf
EOF
    mv "$dir/ad.env.tmp" "$dir/ad.env"
}

# True when PID has a listening TCP socket on PORT.
listening() {
    ss -ltnpH "sport = :$2" 2>/dev/null | grep -q "pid=$1,"
}

start() {
    local dir=$1
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)   # smb.conf and ad.env need absolute paths
    # The path goes unquoted into smb.conf and ad.env.
    case $dir in *[!A-Za-z0-9._/+-]*) die "DIR must be a plain path (letters, digits, ._/+-): $dir" ;; esac
    if [ -f "$dir/samba.pid" ] && alive "$(cat "$dir/samba.pid")"; then
        die "a samba already runs for $dir (PID $(cat "$dir/samba.pid"))"
    fi
    local t0=$SECONDS
    rm -rf "$dir/dc" "$dir/run" "$dir/log" "$dir/tls" "$dir/ad.env" "$dir/samba.pid" \
        "$dir/samba.log" "$dir/load.log" "$dir/provision.log"
    mkdir -p "$dir/run" "$dir/log" "$dir/tls"

    local adminpw
    adminpw=$(random_password)
    (umask 077 && printf '%s' "$adminpw" >"$dir/admin.secret")
    make_tls "$dir/tls" "$dir/ca.pem"
    provision "$dir" "$adminpw"

    # -i: stay in the foreground (so $! is samba's PID) and log to stdout;
    # -M single: one process, no forked workers to track. stdin is
    # /dev/null, never the caller's: samba -i watches stdin ("EOF on
    # stdin - terminating") and must not die with the caller's pipe; on
    # /dev/null it keeps running (observed with Samba 4.17).
    "${SAMBA:-$(find_cmd samba)}" -s "$dir/dc/etc/smb.conf" -i -M single \
        </dev/null >>"$dir/samba.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$dir/samba.pid"

    # Ready when this samba (not another process on the port) listens on
    # 389 and 636 and answers a root DSE search. About 1 s here; allow 30.
    local i
    for ((i = 0; i < 300; i++)); do
        if ! alive "$pid"; then
            tail -n 20 "$dir/samba.log" >&2
            rm -f "$dir/samba.pid"
            die "samba exited during startup"
        fi
        if listening "$pid" 389 && listening "$pid" 636 \
            && LDAPNOINIT=1 ldapsearch -x -LLL -H ldap://127.0.0.1 -b '' -s base \
                defaultNamingContext >/dev/null 2>&1; then
            break
        fi
        sleep 0.1
    done
    if [ "$i" -ge 300 ]; then
        tail -n 20 "$dir/samba.log" >&2
        stop "$dir"
        die "samba not answering after 30 s; stopped"
    fi

    if ! load "$dir" || ! check "$dir"; then
        stop "$dir"
        die "test data not loaded (see $dir/load.log); samba stopped"
    fi
    write_env "$dir"
    echo "samba PID $pid on ldap://127.0.0.1 and ldaps://127.0.0.1 (dir $dir, $((SECONDS - t0)) s)"
}

stop() {
    local dir=$1 pid
    [ -f "$dir/samba.pid" ] || die "no $dir/samba.pid"
    pid=$(cat "$dir/samba.pid")
    dir=$(cd "$dir" && pwd -P)
    stop_daemon samba.sh "$pid" is_our_samba "$dir"
    rm -f "$dir/samba.pid"
}

modify() {
    local dir=$1
    shift
    if [ ! -f "$dir/samba.pid" ] || ! alive "$(cat "$dir/samba.pid")"; then
        die "no samba runs for $dir"
    fi
    ldbmodify -H "$dir/dc/private/sam.ldb" "$@"
}

case "${1:-}" in
    start) [ $# -eq 2 ] || die "usage: $0 start DIR"; start "$2" ;;
    stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
    modify) [ $# -ge 2 ] || die "usage: $0 modify DIR [LDBMODIFY-OPTION...] < LDIF"; modify "${@:2}" ;;
    *) die "usage: $0 start DIR | stop DIR | modify DIR [LDBMODIFY-OPTION...] < LDIF" ;;
esac
