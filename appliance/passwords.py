"""The rules a new password must meet, wherever it is set: the account page, a reset or
invitation link, the command line.

A password is refused when it is shorter than the configured minimum ([accounts]
password_min_length), when it is the user's name (give or take digits and symbols around
it), when it is one of the most common passwords (common_passwords beside this
module) give or take digits and symbols around it, or when it repeats a few characters.
Each refusal says why, in words a person can act on.
"""

from __future__ import annotations

import functools
import string
from importlib import resources

from appliance.errors import UserError

# The default of [accounts] password_min_length.
DEFAULT_MIN_LENGTH = 12
# Fewer different characters than this is a pattern, not a password ("aaaaaaaaaaaa").
MIN_DISTINCT = 5
# What people put around a word to pass a rule: "Password2024!".
DECORATION = string.digits + string.punctuation + " "


@functools.cache
def common_passwords() -> frozenset[str]:
    text = resources.files("appliance").joinpath("common_passwords").read_text()
    return frozenset(line.strip() for line in text.splitlines()
                     if line.strip() and not line.startswith("#"))


def problem(password: str, name: str, min_length: int = DEFAULT_MIN_LENGTH) -> str | None:
    """Why `password` may not be `name`'s, or None when it may."""
    if len(password) < min_length:
        return f"A password needs at least {min_length} characters (this one has {len(password)})."
    lowered = password.lower()
    core = lowered.strip(DECORATION)
    if name and (lowered == name.lower() or core == name.lower()):
        return "A password may not be your user name."
    if lowered in common_passwords() or core in common_passwords():
        return ("This password is one of the most common ones, which are tried first: "
                "choose another (a few unrelated words make a good one).")
    if len(set(lowered)) < MIN_DISTINCT:
        return f"A password needs at least {MIN_DISTINCT} different characters."
    return None


def check(password: str, name: str, min_length: int = DEFAULT_MIN_LENGTH) -> None:
    """Raise UserError (changing nothing) when `password` breaks a rule."""
    reason = problem(password, name, min_length)
    if reason is not None:
        raise UserError(reason)
