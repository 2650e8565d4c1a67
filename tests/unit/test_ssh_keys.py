"""Reading OpenSSH public key lines: what is accepted, the fingerprint ssh-keygen prints,
and each refusal with its reason. Keys are made by the real ssh-keygen."""

from __future__ import annotations

import base64
import struct
import subprocess
from pathlib import Path

import pytest

from appliance.errors import UserError
from appliance.store import ssh_keys


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    for name, args in {"ed": ["-t", "ed25519", "-C", "ada@laptop"],
                       "ec256": ["-t", "ecdsa", "-b", "256"],
                       "ec384": ["-t", "ecdsa", "-b", "384"],
                       "ec521": ["-t", "ecdsa", "-b", "521"],
                       "rsa": ["-t", "rsa", "-b", "2048"],
                       "rsa1k": ["-t", "rsa", "-b", "1024"]}.items():
        subprocess.run(["ssh-keygen", "-q", "-N", "", "-f", str(folder / name), *args],
                       check=True)
    # A security key's public half, from the point of a real P-256 key (no token needed).
    blob = base64.b64decode((folder / "ec256.pub").read_text().split()[1])
    curve_and_point = blob[4 + len(b"ecdsa-sha2-nistp256"):]
    sk = _string(ssh_keys.SK_ECDSA.encode()) + curve_and_point + _string(b"ssh:")
    (folder / "sk.pub").write_text(f"{ssh_keys.SK_ECDSA} {base64.b64encode(sk).decode()} fido\n")
    return folder


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def keygen_fingerprint(path: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return out.split()[1]


@pytest.mark.parametrize("name, kind, bits", [
    ("ed", "ssh-ed25519", 256), ("ec256", "ecdsa-sha2-nistp256", 256),
    ("ec384", "ecdsa-sha2-nistp384", 384), ("ec521", "ecdsa-sha2-nistp521", 521),
    ("rsa", "ssh-rsa", 2048), ("sk", ssh_keys.SK_ECDSA, 256)])
def test_each_accepted_kind_is_read_with_the_fingerprint_ssh_keygen_prints(keys, name, kind, bits):
    key = ssh_keys.parse((keys / f"{name}.pub").read_text())
    assert (key.type, key.bits) == (kind, bits)
    assert key.fingerprint == keygen_fingerprint(keys / f"{name}.pub")
    assert key.line() == " ".join((keys / f"{name}.pub").read_text().split()[:2])


def test_a_security_ed25519_key_is_accepted():
    blob = _string(ssh_keys.SK_ED25519.encode()) + _string(bytes(32)) + _string(b"ssh:")
    key = ssh_keys.parse(f"{ssh_keys.SK_ED25519} {base64.b64encode(blob).decode()}")
    assert key.type == ssh_keys.SK_ED25519 and key.comment == ""


def test_the_comment_is_kept_and_blank_lines_and_comment_lines_are_ignored(keys):
    text = "\n# my laptop\n\n  " + (keys / "ed.pub").read_text() + "\n\n"
    assert ssh_keys.parse(text).comment == "ada@laptop"


def refusal(text: str) -> str:
    with pytest.raises(UserError) as caught:
        ssh_keys.parse(text)
    return str(caught.value)


def test_a_short_rsa_key_is_refused_with_its_size(keys):
    assert "1024 bits; at least 2048" in refusal((keys / "rsa1k.pub").read_text())


def test_a_private_key_is_refused_and_the_public_one_asked_for(keys):
    assert "this is a private key" in refusal((keys / "ed").read_text())


def test_options_before_the_key_are_refused(keys):
    line = 'restrict,command="/bin/sh" ' + (keys / "ed.pub").read_text()
    assert "options before the key type are not accepted" in refusal(line)
    assert "options before" in refusal("no-pty " + (keys / "ed.pub").read_text())


@pytest.mark.parametrize("text, reason", [
    ("", "no key given"),
    ("hello world", "not an OpenSSH public key"),
    ("ssh-ed25519", "has no body"),
    ("ssh-ed25519 AAAA!!!notbase64", "not valid base64"),
    ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "DSA keys are no longer accepted"),
    ("ssh-ed25519-cert-v01@openssh.com AAAA", "certificates are not accepted"),
    ("---- BEGIN SSH2 PUBLIC KEY ----\nAAAA\n---- END SSH2 PUBLIC KEY ----", "RFC 4716"),
])
def test_text_that_is_no_usable_key_is_refused_with_its_reason(text, reason):
    assert reason in refusal(text)


def test_two_keys_at_once_are_refused(keys):
    text = (keys / "ed.pub").read_text() + (keys / "rsa.pub").read_text()
    assert "one key at a time" in refusal(text)


def test_a_body_of_another_type_than_the_line_says_is_refused(keys):
    body = (keys / "ed.pub").read_text().split()[1]
    assert "not ssh-rsa" in refusal(f"ssh-rsa {body}")


def test_a_cut_or_padded_body_is_refused_as_damaged(keys):
    blob = base64.b64decode((keys / "ed.pub").read_text().split()[1])
    for damaged in (blob[:-5], blob + b"\0\0\0\0"):
        text = f"ssh-ed25519 {base64.b64encode(damaged).decode()}"
        assert "damaged" in refusal(text)


def test_a_point_off_the_curve_length_is_refused(keys):
    blob = _string(b"ecdsa-sha2-nistp256") + _string(b"nistp256") + _string(b"\4" + bytes(10))
    assert "damaged" in refusal(f"ecdsa-sha2-nistp256 {base64.b64encode(blob).decode()}")


def test_a_name_loses_control_characters_and_must_not_be_empty_or_long():
    assert ssh_keys.check_name(" lap\x1b[31mtop\n") == "lap[31mtop"
    with pytest.raises(UserError):
        ssh_keys.check_name("\n\t")
    with pytest.raises(UserError):
        ssh_keys.check_name("x" * 101)
