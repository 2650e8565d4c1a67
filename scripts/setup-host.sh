#!/bin/bash
# Prepare a Debian 12 host for the appliance: packages, PostgreSQL (roles, pg_hba,
# database), the Docker engine and the base image of build containers.
#
# Usage (as root):  scripts/setup-host.sh STATE_DIR
#   env PY      python of the appliance's venv; when set, the base image is made too
#   env CONFIG  the appliance.toml to read for the base image (default: the usual one)
#   env APPLIANCE_PROJECTS_GROUP (appliance_projects), APPLIANCE_DB_USER (appliance),
#       APPLIANCE_DB_NAME (appliance)
#   env APPLIANCE_HOST_PASSWORD_FILE  where the role's password is kept for the whole host
#       (default /etc/appliance/db-password, or /etc/appliance/db-password.<user> for a
#       role other than `appliance`)
#
# Safe to re-run, and fast when everything is in place: every step checks first.
# Writes nothing outside STATE_DIR except system configuration (packages, pg_hba.conf,
# roles, a running dockerd, the sshd drop-in of the appliance's SSH user) and the role's
# password file.
#
# The PostgreSQL role belongs to the host, not to one state folder, so its password does
# too: it is kept once in the host's password file (root only, mode 600) and copied into
# STATE_DIR/db-password (mode 600), which is what the config of a checkout reads. Every
# run for any state folder uses the same password, so setting up a second checkout (or a
# test state folder) never locks out the first. Where that file is missing but the role
# exists (set up by an older version of this script), the password of STATE_DIR is
# adopted if it logs in; only when none does is a new one made, and the other state
# folders' copies are refreshed by running this script for them (`make run` and
# `make test` do). Runs for several state folders at once wait for each other.
set -euo pipefail

# openssh-server: the tests of sftp: backup copies start an sshd of their own on loopback.
# wrk: the load client of bench/proxy.py.
PACKAGES=(postgresql docker.io debootstrap git nodejs npm chromium python3-psycopg2
          python3-venv curl restic openssh-server caddy wrk)
# A package also counts as present when its command is there: Docker's or NodeSource's
# own packages (docker-ce, nodejs with npm) conflict with Debian's.
declare -A COMMANDS=([docker.io]=dockerd [debootstrap]=debootstrap [git]=git [nodejs]=node
                     [npm]=npm [chromium]=chromium [curl]=curl [restic]=restic
                     [openssh-server]=/usr/sbin/sshd [caddy]=caddy [wrk]=wrk)
GROUP=${APPLIANCE_PROJECTS_GROUP:-appliance_projects}
DB_USER=${APPLIANCE_DB_USER:-appliance}
DB_NAME=${APPLIANCE_DB_NAME:-appliance}
if [ "$DB_USER" = appliance ]; then
    HOST_PASSWORD_FILE=${APPLIANCE_HOST_PASSWORD_FILE:-/etc/appliance/db-password}
else
    HOST_PASSWORD_FILE=${APPLIANCE_HOST_PASSWORD_FILE:-/etc/appliance/db-password.$DB_USER}
fi
DOCKER_WAIT_SECONDS=60   # dockerd usually answers within 2 s; a slow disk can take longer

say() { printf '%s\n' "$*"; }
die() { printf 'setup-host: %s\n' "$*" >&2; exit 1; }

check_arguments() {
    [ $# -eq 1 ] || die "usage: $0 STATE_DIR"
    [ "$(id -u)" -eq 0 ] \
        || die "must run as root (it installs packages and configures PostgreSQL)"
    local name
    for name in "$GROUP" "$DB_USER" "$DB_NAME"; do
        [[ $name =~ ^[a-z_][a-z0-9_]*$ ]] || die "not a plain PostgreSQL name: '$name'"
    done
}

package_present() {
    local command=${COMMANDS[$1]:-} status
    if [ -n "$command" ] && command -v "$command" >/dev/null; then
        return 0
    fi
    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)
    [ "$status" = "install ok installed" ]
}

install_packages() {
    local missing=() package
    for package in "${PACKAGES[@]}"; do
        package_present "$package" || missing+=("$package")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "packages: all present"
        return
    fi
    say "packages: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
}

# --- PostgreSQL ------------------------------------------------------------------------

# Sets PG_VERSION, PG_CLUSTER and PG_PORT from the first cluster, creating one if none.
find_cluster() {
    if [ -z "$(pg_lsclusters -h)" ]; then
        local version
        version=$(ls /usr/lib/postgresql | sort -n | tail -1)
        say "postgresql: creating cluster $version/main"
        pg_createcluster "$version" main >/dev/null
    fi
    read -r PG_VERSION PG_CLUSTER PG_PORT _ < <(pg_lsclusters -h | head -1)
}

start_postgresql() {
    find_cluster
    if pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" \
            '$1 == v && $2 == c && $4 ~ /^online/ {found = 1} END {exit !found}'; then
        say "postgresql $PG_VERSION/$PG_CLUSTER: running"
    else
        pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start
        say "postgresql $PG_VERSION/$PG_CLUSTER: started"
    fi
}

psql_admin() {
    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" "$@"
}

# Project roles log in over the socket from containers, where peer cannot work.
ensure_hba_rule() {
    local hba rule_re peer_re tmp
    hba=$(psql_admin -Atc 'SHOW hba_file')
    rule_re="^local[[:space:]]+all[[:space:]]+\\+$GROUP[[:space:]]+scram-sha-256"
    if grep -Eq "$rule_re" "$hba"; then
        say "postgresql: pg_hba rule for +$GROUP present"
        return
    fi
    peer_re='^local[[:space:]]+all[[:space:]]+all[[:space:]]+peer'
    tmp=$(mktemp "$hba.XXXXXX")
    awk -v rule="local   all             +$GROUP                     scram-sha-256" \
        -v re="$peer_re" \
        '!done && $0 ~ re {print rule; done = 1} {print} END {if (!done) print rule}' \
        "$hba" > "$tmp"
    cat "$tmp" > "$hba"   # keeps the file's owner and mode
    rm -f "$tmp"
    psql_admin -c 'SELECT pg_reload_conf()' >/dev/null
    say "postgresql: pg_hba rule for +$GROUP added, configuration reloaded"
}

role_exists() {
    [ "$(psql_admin -v user="$DB_USER" -At <<'SQL'
SELECT count(*) FROM pg_roles WHERE rolname = :'user'
SQL
)" = 1 ]
}

# True when the password logs the role in over TCP, the way the appliance connects.
logs_in() {
    PGPASSWORD=$1 PGCONNECT_TIMEOUT=5 psql -X -w -q -h 127.0.0.1 -p "$PG_PORT" \
        -U "$DB_USER" -d postgres -Atc 'SELECT 1' >/dev/null 2>&1
}

new_password() {
    head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | cut -c1-32
}

# Write $2 to file $1, mode 600, replacing it at once (never seen half-written).
write_secret() {
    local tmp
    tmp=$(umask 077 && mktemp "$1.XXXXXX")
    printf '%s\n' "$2" > "$tmp"
    mv -f "$tmp" "$1"
}

# Sets PASSWORD to the role's password, from the host's file, else from a state folder's
# copy that logs in, else a new one; then keeps it in the host's file and STATE_DIR.
choose_password() {
    local copy="$STATE_DIR/db-password"
    if [ -s "$HOST_PASSWORD_FILE" ]; then
        PASSWORD=$(tr -d '\n' < "$HOST_PASSWORD_FILE")
    elif [ -s "$copy" ] && role_exists && logs_in "$(tr -d '\n' < "$copy")"; then
        PASSWORD=$(tr -d '\n' < "$copy")
        say "postgresql: kept the password of $DB_USER found in $copy"
    else
        PASSWORD=$(new_password)
        if role_exists; then
            say "postgresql: warning: no password of $DB_USER known here logs in; it is" \
                "replaced, and other state folders get it when this script runs for them"
        fi
    fi
    [ -n "$PASSWORD" ] || die "$HOST_PASSWORD_FILE holds no password"
    if [ ! -s "$HOST_PASSWORD_FILE" ]; then
        write_secret "$HOST_PASSWORD_FILE" "$PASSWORD"
        say "postgresql: the password of $DB_USER is kept in $HOST_PASSWORD_FILE (root only)"
    fi
    chmod go-rwx "$HOST_PASSWORD_FILE"
    if [ ! -s "$copy" ] || [ "$(tr -d '\n' < "$copy")" != "$PASSWORD" ]; then
        write_secret "$copy" "$PASSWORD"
        say "postgresql: copied the password of $DB_USER into $copy"
    fi
    chmod 600 "$copy"
}

check_password_encryption() {
    local encryption
    encryption=$(psql_admin -Atc 'SHOW password_encryption')
    if [ "$encryption" != "scram-sha-256" ]; then
        say "postgresql: warning: password_encryption is $encryption;" \
            "the appliance's password is stored as scram-sha-256 regardless"
    fi
}

ensure_roles_and_database() {
    local folder
    folder=$(dirname "$HOST_PASSWORD_FILE")
    mkdir -p "$folder"
    # One run at a time from here (a lock on the folder): two runs could otherwise each
    # make a password.
    exec 9<"$folder"
    flock 9
    choose_password
    check_password_encryption
    psql_admin -v group="$GROUP" -v user="$DB_USER" -v db="$DB_NAME" \
        -v pw="$PASSWORD" <<'SQL'
SET client_min_messages = warning;
SELECT format('CREATE ROLE %I NOLOGIN', :'group')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'group') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') \gexec
SET password_encryption = 'scram-sha-256';
ALTER ROLE :"user" LOGIN CREATEDB CREATEROLE NOSUPERUSER PASSWORD :'pw';
GRANT :"group" TO :"user" WITH ADMIN OPTION;
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
ALTER DATABASE :"db" OWNER TO :"user";
-- Project roles connect only to their own builds' databases (the appliance revokes
-- PUBLIC's CONNECT on each); not to the maintenance databases nor the state database.
REVOKE CONNECT, TEMPORARY ON DATABASE postgres, template1 FROM PUBLIC;
REVOKE CONNECT, TEMPORARY ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE postgres, template1 TO :"user";
SQL
    flock -u 9
    exec 9>&-
    say "postgresql: role $DB_USER (admin of $GROUP) and database $DB_NAME ready"
}

# --- Docker ----------------------------------------------------------------------------

start_docker() {
    if docker info >/dev/null 2>&1; then
        say "docker: running"
        return
    fi
    if [ -d /run/systemd/system ]; then
        systemctl start docker
    else
        setsid dockerd >>"$STATE_DIR/dockerd.log" 2>&1 < /dev/null &
    fi
    local waited=0
    until docker info >/dev/null 2>&1; do
        [ $waited -lt $DOCKER_WAIT_SECONDS ] \
            || die "dockerd did not answer within $DOCKER_WAIT_SECONDS s" \
                   "(see $STATE_DIR/dockerd.log)"
        sleep 1
        waited=$((waited + 1))
    done
    say "docker: started"
}

# The base image is made by the appliance's own code, the path a real install takes.
ensure_base_image() {
    if [ -z "${PY:-}" ]; then
        say "base image: skipped (set PY to the venv's python to build it here)"
        return
    fi
    [ -x "$PY" ] || die "PY=$PY is not an executable python"
    local args=(-m appliance.runtime.images ensure-base)
    [ -z "${CONFIG:-}" ] || args+=(--config "$CONFIG")
    PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PY" "${args[@]}"
}

# The SSH entry (git and build shells over SSH): `appliance ssh-install` writes the sshd
# drop-in for [ssh] user. Only with PY, and when that system user exists and is not root:
# a checkout whose daemon runs as root has no SSH user to give (the .deb makes one).
ensure_ssh_entry() {
    if [ -z "${PY:-}" ]; then
        say "ssh: skipped (set PY to the venv's python to write the sshd drop-in)"
        return
    fi
    local args=(-m appliance.cli) user
    [ -z "${CONFIG:-}" ] || args+=(--config "$CONFIG")
    user=$(PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c \
        'import sys; from appliance import config; print(config.load(sys.argv[1] or None).ssh.user)' \
        "${CONFIG:-}")
    if ! getent passwd "$user" >/dev/null || [ "$(id -u "$user")" -eq 0 ]; then
        say "ssh: skipped ([ssh] user = $user: no such system user, or root)"
        return
    fi
    PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PY" "${args[@]}" ssh-install
}

main() {
    check_arguments "$@"
    mkdir -p "$1"
    STATE_DIR=$(cd "$1" && pwd)
    REPO=$(cd "$(dirname "$0")/.." && pwd)
    install_packages
    start_postgresql
    ensure_hba_rule
    ensure_roles_and_database
    start_docker
    ensure_base_image
    ensure_ssh_entry
}

main "$@"
