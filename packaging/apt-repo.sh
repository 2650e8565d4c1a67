#!/bin/bash
# A signed apt repository folder (apt-ftparchive, a GPG key made for it) holding the given
# .deb files next to those already in it, ready to publish as it is:
#
#   deb [signed-by=/usr/share/keyrings/odoo-appliance.gpg] https://HOST/PATH stable main
#
# Usage: packaging/apt-repo.sh REPO DEB...
#   env APT_REPO_GNUPGHOME  the keyring that signs (default: build/apt-gnupg of this
#       checkout, made with a new key on first use; never inside REPO, which is public).
#       For releases, point it at the maintainers' keyring and keep that one safe.
#
# REPO gets pool/main/ (every version added so far: apt can go back), dists/stable/
# (Packages, Release, InRelease, Release.gpg) and odoo-appliance.gpg, the public key.
set -euo pipefail

SUITE=stable
COMPONENT=main
ARCHITECTURES="amd64 arm64"   # the package is Architecture: all, listed for each
KEY_NAME="Odoo appliance apt repository"

die() { printf 'apt-repo: %s\n' "$*" >&2; exit 1; }

ensure_tools() {
    local missing=()
    command -v apt-ftparchive >/dev/null || missing+=(apt-utils)
    command -v gpg >/dev/null || missing+=(gnupg)
    [ ${#missing[@]} -eq 0 ] && return
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]} (apt-get install them)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

ensure_key() {
    mkdir -p -m 0700 "$GNUPGHOME"
    if ! gpg --batch --list-secret-keys "$KEY_NAME" >/dev/null 2>&1; then
        gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
            --quick-generate-key "$KEY_NAME" ed25519 sign never
        echo "apt-repo: made a signing key in $GNUPGHOME"
    fi
    gpg --batch --yes --export "$KEY_NAME" > "$repo/odoo-appliance.gpg"
    gpg --batch --yes --armor --export "$KEY_NAME" > "$repo/odoo-appliance.asc"
}

add_packages() {
    local pool=$repo/pool/$COMPONENT/o/odoo-appliance deb
    mkdir -p "$pool"
    for deb in "$@"; do
        [ -f "$deb" ] || die "no such package: $deb"
        cp "$deb" "$pool/"
    done
}

write_indexes() {
    local dist=$repo/dists/$SUITE arch
    rm -rf "$dist"
    for arch in $ARCHITECTURES; do
        mkdir -p "$dist/$COMPONENT/binary-$arch"
        (cd "$repo" && apt-ftparchive packages "pool/$COMPONENT") \
            > "$dist/$COMPONENT/binary-$arch/Packages"
        gzip -9nk "$dist/$COMPONENT/binary-$arch/Packages"
    done
    (cd "$dist" && apt-ftparchive \
        -o APT::FTPArchive::Release::Origin=odoo-appliance \
        -o APT::FTPArchive::Release::Label=odoo-appliance \
        -o APT::FTPArchive::Release::Suite=$SUITE \
        -o APT::FTPArchive::Release::Codename=$SUITE \
        -o APT::FTPArchive::Release::Architectures="$ARCHITECTURES" \
        -o APT::FTPArchive::Release::Components=$COMPONENT \
        release .) > "$dist/Release.new"
    mv "$dist/Release.new" "$dist/Release"
    gpg --batch --yes --local-user "$KEY_NAME" --clearsign -o "$dist/InRelease" "$dist/Release"
    gpg --batch --yes --local-user "$KEY_NAME" -abs -o "$dist/Release.gpg" "$dist/Release"
}

main() {
    [ $# -ge 2 ] || die "usage: $0 REPO DEB..."
    local root
    root=$(cd "$(dirname "$0")/.." && pwd)
    mkdir -p "$1"
    repo=$(cd "$1" && pwd)
    shift
    export GNUPGHOME=${APT_REPO_GNUPGHOME:-$root/build/apt-gnupg}
    case "$GNUPGHOME/" in "$repo"/*) die "the signing keyring may not be inside $repo" ;; esac
    ensure_tools
    ensure_key
    add_packages "$@"
    write_indexes
    echo "apt-repo: $repo (suite $SUITE, $(ls "$repo/pool/$COMPONENT/o/odoo-appliance" | wc -l) package(s))"
}

main "$@"
