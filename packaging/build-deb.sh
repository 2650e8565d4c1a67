#!/bin/bash
# Build odoo-appliance_<version>_all.deb from a clean copy of the source tree, with the
# front-end assets copied from npm (package-lock.json) at build time.
#
# Usage: packaging/build-deb.sh OUTDIR [VERSION]
#        packaging/build-deb.sh --tools   (only install what building and checking need)
#   VERSION      build this version instead of debian/changelog's (a changelog entry
#                is added to the copy; used for upgrade tests and point releases)
#   env DEB_SOURCE  HEAD (default): the committed tree, as a release is built (or any
#                   other commit); worktree: this checkout's files, tracked or not
#                   (ignored ones left out)
#   env DEB_OVERLAY a folder whose files are copied over the tree before the build (the
#                   upgrade test adds a migration with it)
#
# The same commit gives the same .deb, byte for byte: file dates are the changelog's
# (SOURCE_DATE_EPOCH), and nothing of the build machine goes into the package. lintian
# checks it: an error fails the build, other tags are printed.
set -euo pipefail

BUILD_TOOLS=(debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools
             python3-build python3-installer npm lintian apt-utils gnupg systemd)
# NodeSource's nodejs (with npm in it) conflicts with Debian's npm: a command counts too.
declare -A COMMANDS=([npm]=npm [systemd]=systemd-analyze)

die() { printf 'build-deb: %s\n' "$*" >&2; exit 1; }

install_build_tools() {
    local missing=() package
    for package in "${BUILD_TOOLS[@]}"; do
        [ -n "${COMMANDS[$package]:-}" ] && command -v "${COMMANDS[$package]}" >/dev/null \
            && continue
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' \
            || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return
    [ "$(id -u)" -eq 0 ] || die "missing build tools: ${missing[*]} (apt-get install them)"
    echo "build-deb: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

copy_tree() {
    mkdir -p "$tree"
    if [ "${DEB_SOURCE:-HEAD}" = worktree ]; then
        git -C "$root" ls-files -z --cached --others --exclude-standard \
            | (cd "$root" && xargs -0 tar --no-recursion -cf - 2>/dev/null) | tar -xf - -C "$tree"
    else
        git -C "$root" archive --format=tar "${DEB_SOURCE:-HEAD}" | tar -xf - -C "$tree"
    fi
    if [ -n "${DEB_OVERLAY:-}" ]; then
        cp -a "$DEB_OVERLAY/." "$tree/"
    fi
    cp -a "$tree/packaging/deb/debian" "$tree/debian"
}

copy_assets() {
    (cd "$tree" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
    bash "$tree/scripts/copy-assets.sh" >/dev/null
    rm -rf "$tree/node_modules"
}

# A changelog entry for version $1, dated by the source's commit (so the same commit
# gives the same package), after the entry before it.
add_version() {
    local rev=${DEB_SOURCE:-HEAD} previous when date
    [ "$rev" != worktree ] || rev=HEAD
    previous=$(date -d "$(cd "$tree" && dpkg-parsechangelog -S Date)" +%s)
    when=$(git -C "$root" log -1 --format=%ct "$rev")
    [ "$when" -gt "$previous" ] || when=$((previous + 1))
    date=$(LC_ALL=C date -R -u -d "@$when")
    { printf 'odoo-appliance (%s) bookworm; urgency=medium\n\n  * Version %s.\n\n' \
          "$1" "$1"
      printf ' -- %s  %s\n\n' "$(cd "$tree" && dpkg-parsechangelog -S Maintainer)" "$date"
      cat "$tree/debian/changelog"; } > "$tree/debian/changelog.new"
    mv "$tree/debian/changelog.new" "$tree/debian/changelog"
}

check_package() {
    local tags
    tags=$(env PATH=/usr/sbin:/usr/bin:/sbin:/bin lintian --pedantic --display-info \
               --tag-display-limit 0 "$1" 2>/dev/null) \
        || { printf '%s\n' "$tags" >&2; die "lintian found errors in $1"; }
    [ -z "$tags" ] || printf 'build-deb: lintian: %s\n' "$tags" >&2
}

main() {
    if [ "${1:-}" = --tools ]; then
        install_build_tools
        return
    fi
    [ $# -ge 1 ] && [ $# -le 2 ] || die "usage: $0 OUTDIR [VERSION]"
    root=$(cd "$(dirname "$0")/.." && pwd)
    mkdir -p "$1"
    out=$(cd "$1" && pwd)
    install_build_tools
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    tree=$work/odoo-appliance
    copy_tree
    copy_assets
    [ -z "${2:-}" ] || add_version "$2"
    version=$(cd "$tree" && dpkg-parsechangelog -S Version)
    # Debian's own tools only: no python or pip of a version manager or a venv.
    (cd "$tree" && env PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -b --no-sign -uc -us >"$work/build.log" 2>&1) \
        || { tail -40 "$work/build.log" >&2; die "dpkg-buildpackage failed"; }
    check_package "$work/odoo-appliance_${version}_all.deb"
    cp "$work/odoo-appliance_${version}_all.deb" "$out/"
    echo "$out/odoo-appliance_${version}_all.deb"
}

main "$@"
