#!/usr/bin/env bash
# `make run`: serve the appliance from this checkout with an admin and a demo project whose
# sample addon is pushed, so a build turns green in the browser.
#
# ODOO_SOURCE  where Odoo comes from: a git URL (default: Odoo's official repository) or
#              a local Odoo source tree. ODOO_REF: the branch (default 18.0).
# OFFLINE_DEMO=1  skip real Odoo and run the demo on the test stand-in (labelled in the UI).
set -euo pipefail
: "${PY:?}" "${STATE:?}" "${CONFIG:?}"
cd "$(dirname "$0")/.."
appliance() { "$PY" -m appliance.cli --config "$CONFIG" "$@"; }

ODOO_SOURCE=${ODOO_SOURCE:-https://github.com/odoo/odoo.git}
ODOO_REF=${ODOO_REF:-18.0}
offline=${OFFLINE_DEMO:-0}
if [ "$offline" != 1 ]; then
  if [ -d "$ODOO_SOURCE" ]; then
    [ -f "$ODOO_SOURCE/odoo-bin" ] || { echo "ODOO_SOURCE=$ODOO_SOURCE has no odoo-bin"; exit 1; }
  elif ! timeout 30 git ls-remote --exit-code --heads "$ODOO_SOURCE" "$ODOO_REF" >/dev/null 2>&1; then
    echo "Odoo's source cannot be reached from this machine: $ODOO_SOURCE ($ODOO_REF)."
    echo "Point ODOO_SOURCE at a reachable git URL or a local Odoo tree, or use the"
    echo "offline demo, which runs builds on the small stand-in used by the tests (not real Odoo)."
    answer=y
    if [ -t 0 ]; then read -r -p "Continue with the offline demo? [Y/n] " answer || answer=n; fi
    case "$answer" in [nN]*) exit 1 ;; esac
    offline=1
  fi
fi
if [ "$offline" = 1 ]; then
  export APPLIANCE_ODOO_SOURCE="$PWD/tests/odoo_stub" APPLIANCE_SERVER_OFFLINE_DEMO=true
  export APPLIANCE_RUNTIME_DEBIAN_PACKAGES="python3,python3-psycopg2,python3-pip,ca-certificates"
  echo "offline demo: builds run on the stand-in Odoo in tests/odoo_stub"
else
  export APPLIANCE_ODOO_SOURCE="$ODOO_SOURCE" APPLIANCE_ODOO_REF="$ODOO_REF"
fi

appliance migrate
password_file="$STATE/admin-password"
if [ ! -s "$password_file" ]; then
  (umask 077; "$PY" -c 'import secrets; print(secrets.token_urlsafe(12))' > "$password_file")
  appliance user create admin --admin --password-stdin < "$password_file"
fi
demo_flag=""; [ "$offline" = 1 ] && demo_flag="--demo"
if ! appliance project list --json | grep -q '"name": "demo"'; then
  appliance project create demo $demo_flag
fi

appliance serve &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server' INT TERM
url=$("$PY" - "$CONFIG" <<'EOF'
import sys
from appliance.config import load
print(load(sys.argv[1]).server.public_url.rstrip("/"))
EOF
)
for _ in $(seq 1 100); do curl -fsS "$url/-/health" >/dev/null 2>&1 && break; sleep 0.2; done

work=$(mktemp -d)
cp -r tests/addons/green/. "$work/"
token=$(appliance token create admin --label "make run")
git -C "$work" init -q -b main
git -C "$work" add -A
git -C "$work" -c user.name=Appliance -c user.email=demo@appliance.invalid commit -q -m "Demo addon"
git -C "$work" push "${url/:\/\//://admin:$token@}/git/demo.git" HEAD:refs/heads/feature-demo 2>&1 \
  | sed 's/^/  /'
rm -rf "$work"

echo
echo "The appliance is running at $url"
echo "  sign in as admin, password: $(cat "$password_file")"
echo "  a demo build of the branch feature-demo is on its way: $url/projects/demo"
echo "Ctrl-C stops it."
wait $server
