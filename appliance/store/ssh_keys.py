"""Users' SSH public keys: reading an OpenSSH public key line, and the keys kept per user.

A key is given as the one line of its `.pub` file (`ssh-ed25519 AAAA... ada@laptop`).
Accepted: ed25519, ECDSA on the NIST curves, RSA of 2048 bits or more, and the security-key
(FIDO) kinds of both. Refused, each with its reason: options before the key (the appliance
writes its own), private keys, the RFC 4716 format, DSA, certificates, anything that does
not decode, and a key already registered (a key names exactly one person, since sshd asks
the appliance about a key by its fingerprint alone).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
import unicodedata
from dataclasses import dataclass

from appliance.errors import NotFound, UserError

# Weaker RSA keys are refused, as OpenSSH 9 does for new ones.
MIN_RSA_BITS = 2048
# A 16384-bit RSA key's line is about 2,800 characters.
MAX_LINE = 16384
MAX_NAME = 100
# The length in bytes of an uncompressed point (0x04 || x || y) on each curve.
CURVES = {"nistp256": 65, "nistp384": 97, "nistp521": 133}
ED25519_BYTES = 32
SK_ED25519 = "sk-ssh-ed25519@openssh.com"
SK_ECDSA = "sk-ecdsa-sha2-nistp256@openssh.com"
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "ssh-rsa", SK_ED25519, SK_ECDSA)
# Known to OpenSSH, refused here with a word of why.
REFUSED_TYPES = {
    "ssh-dss": "DSA keys are no longer accepted by OpenSSH",
}
MAKE_ONE = "make one with `ssh-keygen -t ed25519` and paste the .pub file"


@dataclass(frozen=True)
class PublicKey:
    type: str
    body: str  # the base64 of the key's blob, as in the .pub file
    comment: str
    bits: int
    fingerprint: str  # as `ssh-keygen -l` prints it: SHA256:<base64 without padding>

    def line(self) -> str:
        return f"{self.type} {self.body}"


def fingerprint(blob: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def parse(text: str) -> PublicKey:
    """The one public key in `text`, or UserError saying what is wrong with it."""
    line = _the_line(text)
    words = line.split(None, 2)
    kind = words[0]
    if kind not in KEY_TYPES:
        raise UserError(_unknown_type(kind, line))
    if len(words) < 2:
        raise UserError(f"the {kind} key has no body: paste the whole line of the .pub file")
    try:
        blob = base64.b64decode(words[1], validate=True)
    except (binascii.Error, ValueError):
        raise UserError("the key's body is not valid base64: it was cut or changed while "
                        "copying; paste the whole line of the .pub file again") from None
    bits = _check_blob(kind, blob)
    comment = _printable(words[2]) if len(words) > 2 else ""
    return PublicKey(kind, base64.b64encode(blob).decode(), comment, bits, fingerprint(blob))


def _the_line(text: str) -> str:
    if "PRIVATE KEY" in text:
        raise UserError("this is a private key: never share it. Paste the public key, the "
                        "contents of the .pub file beside it (e.g. ~/.ssh/id_ed25519.pub)")
    if "BEGIN SSH2 PUBLIC KEY" in text:
        raise UserError("this key is in the RFC 4716 format: convert it to OpenSSH's with "
                        "`ssh-keygen -i -f key.pub` and paste the line it prints")
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise UserError(f"no key given: paste the contents of a .pub file, e.g. "
                        f"~/.ssh/id_ed25519.pub (no key yet? {MAKE_ONE})")
    if len(lines) > 1:
        raise UserError(f"one key at a time: the text holds {len(lines)} lines")
    if len(lines[0]) > MAX_LINE:
        raise UserError(f"the key is longer than {MAX_LINE} characters: not a public key")
    return lines[0]


def _unknown_type(kind: str, line: str) -> str:
    words = line.split()
    later = [w for w in words[1:] if w in KEY_TYPES or w in REFUSED_TYPES]
    if later:
        return ("options before the key type are not accepted (the appliance sets its own): "
                f"paste the key from `{later[0]}` on")
    if kind in REFUSED_TYPES:
        return f"{REFUSED_TYPES[kind]}: {MAKE_ONE}"
    if kind.endswith("-cert-v01@openssh.com"):
        return f"certificates are not accepted: paste the key itself ({MAKE_ONE})"
    shown = kind if len(kind) <= 40 else kind[:40] + "..."
    shown = _printable(shown)
    return (f"not an OpenSSH public key: it starts with {shown!r}, not with a key type "
            f"({', '.join(KEY_TYPES[:5])}, or a security key's); {MAKE_ONE}")


class _Reader:
    """The wire format of a key blob: uint32-length-prefixed strings (RFC 4251)."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def string(self) -> bytes:
        if self.at + 4 > len(self.data):
            raise ValueError("truncated")
        (length,) = struct.unpack(">I", self.data[self.at:self.at + 4])
        start, self.at = self.at + 4, self.at + 4 + length
        if self.at > len(self.data):
            raise ValueError("truncated")
        return self.data[start:self.at]

    def mpint(self) -> int:
        raw = self.string()
        if raw and raw[0] & 0x80:
            raise ValueError("negative")
        return int.from_bytes(raw, "big")

    def done(self) -> bool:
        return self.at == len(self.data)


def _check_blob(kind: str, blob: bytes) -> int:
    """The key's size in bits, once its blob is found to hold a key of `kind`."""
    reader = _Reader(blob)
    try:
        inner = reader.string().decode("ascii", errors="replace")
        if inner != kind:
            raise UserError(f"the key's body is a {_printable(inner[:40])!r} key, not "
                            f"{kind}: the line was changed")
        bits = _key_bits(kind, reader)
        if not reader.done():
            raise ValueError("trailing bytes")
    except ValueError:
        raise UserError(f"the key's body is damaged (not a whole {kind} key): paste the "
                        "whole line of the .pub file again") from None
    if kind == "ssh-rsa" and bits < MIN_RSA_BITS:
        raise UserError(f"this RSA key has {bits} bits; at least {MIN_RSA_BITS} are needed "
                        f"({MAKE_ONE})")
    return bits


def _key_bits(kind: str, reader: _Reader) -> int:
    if kind in ("ssh-ed25519", SK_ED25519):
        if len(reader.string()) != ED25519_BYTES:
            raise ValueError("bad length")
        bits = 256
    elif kind == "ssh-rsa":
        exponent, modulus = reader.mpint(), reader.mpint()
        if exponent < 3 or exponent % 2 == 0 or modulus % 2 == 0:
            raise ValueError("not an RSA key")
        bits = modulus.bit_length()
    else:
        curve = reader.string().decode("ascii", errors="replace")
        expected = re.search(r"nistp\d+", kind).group()
        point = reader.string()
        if curve != expected or len(point) != CURVES[curve] or point[0] != 4:
            raise ValueError("not a point of the curve")
        bits = {"nistp256": 256, "nistp384": 384, "nistp521": 521}[curve]
    if kind.startswith("sk-"):
        application = reader.string()
        if not application.startswith(b"ssh:"):
            raise ValueError("not an SSH security key")
    return bits


def _printable(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch)[0] != "C").strip()


def check_name(name: str) -> str:
    name = _printable(name)
    if not name:
        raise UserError("a key needs a name (where it lives: 'laptop', 'CI runner')")
    if len(name) > MAX_NAME:
        raise UserError(f"a key's name has at most {MAX_NAME} characters")
    return name


# -- the keys of users ---------------------------------------------------------------------

COLUMNS = "id, user_id, name, key_type, fingerprint, created_at, last_used_at"


def add(conn, user: dict, text: str, name: str = "") -> dict:
    """Register the key in `text` for `user`, named `name` (else its comment, else its
    type); UserError, and nothing added, when it is refused."""
    key = parse(text)
    name = check_name(name or key.comment or f"{key.type} key")
    row = conn.execute(
        f"""INSERT INTO ssh_keys (user_id, name, key_type, key_body, fingerprint)
            VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING {COLUMNS}""",
        (user["id"], name, key.type, key.body, key.fingerprint)).fetchone()
    if row is not None:
        return row
    owner = conn.execute("SELECT user_id, name FROM ssh_keys WHERE fingerprint = %s",
                         (key.fingerprint,)).fetchone()
    if owner is not None and owner["user_id"] == user["id"]:
        raise UserError(f"you have already registered this key, as {owner['name']!r}")
    if owner is not None:
        # Whose it is stays unsaid; a key is one person's.
        raise UserError("this key is already registered to another account: each person "
                        "needs a key of their own")
    raise UserError(f"you already have a key named {name!r}: choose another name")


def of_user(conn, user_id: int) -> list[dict]:
    return conn.execute(f"SELECT {COLUMNS} FROM ssh_keys WHERE user_id = %s ORDER BY name, id",
                        (user_id,)).fetchall()


def remove(conn, user_id: int, key_id: int) -> dict:
    """Remove one of the user's keys; NotFound when the user has no such key."""
    row = conn.execute(f"DELETE FROM ssh_keys WHERE id = %s AND user_id = %s RETURNING {COLUMNS}",
                       (key_id, user_id)).fetchone()
    if row is None:
        raise NotFound(f"no key #{key_id}")
    return row


def find(conn, user_id: int, name_or_fingerprint: str) -> dict:
    """One of the user's keys by its name or fingerprint; NotFound otherwise."""
    row = conn.execute(f"""SELECT {COLUMNS} FROM ssh_keys WHERE user_id = %s
                           AND (name = %s OR fingerprint = %s)""",
                       (user_id, name_or_fingerprint, name_or_fingerprint)).fetchone()
    if row is None:
        raise NotFound(f"no key {name_or_fingerprint!r}")
    return row


def by_fingerprint(conn, fingerprint_text: str) -> dict | None:
    """The key with this fingerprint and its user's name, with the key's public line."""
    return conn.execute(
        """SELECT k.id, k.user_id, k.key_type, k.key_body, k.fingerprint, u.name AS user_name
           FROM ssh_keys k JOIN users u ON u.id = k.user_id WHERE k.fingerprint = %s""",
        (fingerprint_text,)).fetchone()


def key_user(conn, key_id: int) -> tuple[dict, dict] | None:
    """The key and its user, or None when the key is gone (removed since sshd asked);
    its last use is now."""
    key = conn.execute(f"""UPDATE ssh_keys SET last_used_at = now() WHERE id = %s
                           RETURNING {COLUMNS}""", (key_id,)).fetchone()
    if key is None:
        return None
    user = conn.execute("SELECT * FROM users WHERE id = %s", (key["user_id"],)).fetchone()
    return key, user
