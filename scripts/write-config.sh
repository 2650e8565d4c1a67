#!/usr/bin/env bash
# Write a config for running the appliance from this checkout (kept if it exists, so
# edits survive). Usage: write-config.sh STATE_DIR CONFIG_PATH
set -euo pipefail
state=$(realpath -m "$1")
config=$2
[ -f "$config" ] && exit 0
mkdir -p "$state"
port=${APPLIANCE_PORT:-8080}
# The system's CA bundle, as Python's OpenSSL knows it, is trusted inside containers.
cafile=$(python3 -c 'import ssl; print(ssl.get_default_verify_paths().openssl_cafile or "")')
[ -f "$cafile" ] || cafile=""
cat > "$config" <<TOML
# Written by scripts/write-config.sh for running from a checkout; see config/appliance.toml
# for every key and what it does.

[server]
listen = "127.0.0.1:$port"
public_url = "http://127.0.0.1:$port"

[paths]
data_dir = "$state/data"

[database]
dsn = "host=127.0.0.1 dbname=appliance user=appliance"
password_file = "$state/db-password"

[runtime]
ca_bundle = "$cafile"
TOML
echo "config: wrote $config"
