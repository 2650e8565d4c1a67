#!/bin/bash
# A virtualenv that runs the tests on Debian 12's own Python packages, the ones the .deb
# depends on: Debian's /usr/bin/python3 with --system-site-packages, the python3-*
# packages named in debian/control's Depends, python3-pytest, and the project itself
# installed without dependencies (so nothing comes from PyPI).
#
# Usage (as root, to install what is missing): packaging/debian-stack.sh VENV
# Safe to re-run.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
control=$root/packaging/deb/debian/control
venv=${1:?usage: $0 VENV}

# Depends of the binary package, python3-* only; and what the tests import besides.
mapfile -t packages < <(sed -n '/^Package: odoo-appliance$/,/^Description:/p' "$control" \
                        | grep -o 'python3-[a-z0-9.-]*' | sort -u)
packages+=(python3-pytest python3-requests python3-venv python3-pip python3-setuptools)

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "debian-stack: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$venv"
"$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$root"
touch "$venv/.installed"
echo "debian-stack: $venv runs on Debian's ${packages[*]}"
