#!/bin/sh
# Copy the front-end libraries declared in package.json from node_modules into
# appliance/web/static/vendor/, where the templates load them from.
# Safe to re-run: installs node_modules only when missing, then overwrites the copies.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
vendor="$root/appliance/web/static/vendor"
modules="$root/node_modules"

if [ ! -d "$modules/htmx.org" ] || [ ! -d "$modules/zxcvbn" ] || [ ! -d "$modules/codemirror" ] \
   || [ ! -d "$modules/@xterm/xterm" ] || [ ! -d "$modules/@xterm/addon-fit" ]; then
    (cd "$root" && npm install --no-audit --no-fund)
fi

mkdir -p "$vendor"
cp "$modules/htmx.org/dist/htmx.min.js" "$vendor/htmx.min.js"
cp "$modules/zxcvbn/dist/zxcvbn.js" "$vendor/zxcvbn.js"
# CodeMirror 5 (plain scripts, no bundler) for the Editor tab: search and the modes of
# what an Odoo addon holds.
cm="$modules/codemirror"
mkdir -p "$vendor/codemirror"
cp "$cm/lib/codemirror.js" "$cm/lib/codemirror.css" "$cm/addon/dialog/dialog.js" \
   "$cm/addon/dialog/dialog.css" "$cm/addon/search/searchcursor.js" "$cm/addon/search/search.js" \
   "$cm/addon/search/jump-to-line.js" "$cm/addon/edit/matchbrackets.js" "$vendor/codemirror/"
for mode in python xml javascript css htmlmixed markdown sql properties shell rst; do
    cp "$cm/mode/$mode/$mode.js" "$vendor/codemirror/"
done
# xterm.js and its fit add-on (UMD builds, plain scripts) for the Shell tab.
mkdir -p "$vendor/xterm"
cp "$modules/@xterm/xterm/lib/xterm.js" "$modules/@xterm/xterm/css/xterm.css" \
   "$modules/@xterm/addon-fit/lib/addon-fit.js" "$vendor/xterm/"
echo "copied front-end assets into $vendor"
