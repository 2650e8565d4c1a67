#!/bin/sh
# Copy the front-end libraries declared in package.json from node_modules into
# appliance/web/static/vendor/, where the templates load them from.
# Safe to re-run: installs node_modules only when missing, then overwrites the copies.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
vendor="$root/appliance/web/static/vendor"
modules="$root/node_modules"

if [ ! -d "$modules/htmx.org" ] || [ ! -d "$modules/zxcvbn" ]; then
    (cd "$root" && npm install --no-audit --no-fund)
fi

mkdir -p "$vendor"
cp "$modules/htmx.org/dist/htmx.min.js" "$vendor/htmx.min.js"
cp "$modules/zxcvbn/dist/zxcvbn.js" "$vendor/zxcvbn.js"
echo "copied front-end assets into $vendor"
