"""Reading caught messages: what the index keeps of one, and what a person sees of it.

Messages come from builds running code under test: anything may arrive, from clean MIME
to garbage bytes. Nothing here raises on bad input; what cannot be read as MIME is
marked malformed and shown raw.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.errors
import email.header
import email.policy
import email.utils
import logging
import mimetypes
import re
import urllib.parse
from dataclasses import dataclass, field
from email.parser import BytesParser, HeaderParser

log = logging.getLogger(__name__)

# Longest header value kept in the index (a subject of a megabyte is someone's bug).
INDEX_FIELD_CHARS = 998
# Defects the header-only parse reports of a message it did not read whole: Python 3.11.2
# (Debian 12's) flags every multipart message's header block as breaking multipart
# invariants, since it never saw the parts. Not a defect of the message.
HEADER_ONLY_ARTEFACTS = (email.errors.MultipartInvariantViolationDefect,)


def _header(message, name: str) -> str:
    """A header's value with its encoded words decoded, on one line, cut to length."""
    value = message.get(name)
    if value is None:
        return ""
    parts = []
    try:
        for chunk, charset in email.header.decode_header(str(value)):
            if isinstance(chunk, str):
                parts.append(chunk)
                continue
            try:
                parts.append(chunk.decode(charset or "raw-unicode-escape", "replace"))
            except LookupError:  # a charset Python does not know
                parts.append(chunk.decode("utf-8", "replace"))
        text = "".join(parts)
    except (email.errors.HeaderParseError, ValueError):  # a broken encoded word: as it came
        text = str(value)
    return index_text(" ".join(text.split()))


def index_text(text: str) -> str:
    """Text PostgreSQL can store, whatever a sender put in it: no NUL characters, no lone
    surrogates, cut to INDEX_FIELD_CHARS."""
    return _clean(text.replace("\x00", ""))[:INDEX_FIELD_CHARS]


def _date(value: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed


def header_block(raw: bytes) -> bytes:
    """The bytes before the first empty line."""
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]


def looks_like_mime(raw: bytes) -> bool:
    """Does it start with a header block? Garbage bytes and bare text do not."""
    lines = header_block(raw).splitlines()
    if not lines or b":" not in lines[0]:
        return False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            continue
        name, colon, _ = line.partition(b":")
        if not colon or not name or any(c <= 32 or c > 126 for c in name):
            return False
    return True


def summary(raw: bytes) -> dict:
    """The indexed fields of a message: from_header, to_header, subject, message_id,
    sent_at (aware datetime or None), malformed. Reads the header block only, with the
    plain compat32 parser: the catcher indexes every message it accepts, and parsing
    whole messages with the default policy cost it half its throughput."""
    if not looks_like_mime(raw):
        return {"from_header": "", "to_header": "", "subject": "", "message_id": "",
                "sent_at": None, "malformed": True}
    head = header_block(raw).decode("utf-8", "replace")
    message = HeaderParser(policy=email.policy.compat32).parsestr(head)
    return {
        "from_header": _header(message, "From"),
        "to_header": ", ".join(filter(None, (_header(message, name)
                                             for name in ("To", "Cc")))),
        "subject": _header(message, "Subject"),
        "message_id": _header(message, "Message-ID"),
        "sent_at": _date(_header(message, "Date")),
        "malformed": any(not isinstance(defect, HEADER_ONLY_ARTEFACTS)
                         for defect in message.defects),
    }


# --- What a person sees of a message (the message page) -------------------------------

# Inline parts (cid: references) put into the HTML as data: URIs, in total at most this
# many bytes of base64: past it, the remaining references stay as they are (and show as
# broken images) rather than make a page of hundreds of megabytes.
INLINE_DATA_LIMIT = 10 * 1024 * 1024
# What the page says of a message it cannot read as MIME.
RAW_LABEL = "not valid MIME: shown raw"
# A cid: URL in HTML, up to the quote, bracket or space that ends it (RFC 2392).
CID_URL = re.compile(r"""cid:([^\s"'<>()\\]+)""", re.IGNORECASE)


@dataclass
class Attachment:
    """A part that is not the message's text: a file, an inline image, an attached mail."""
    index: int
    filename: str
    content_type: str
    size: int
    content_id: str = ""    # without the angle brackets
    inline: bool = False


@dataclass
class Readable:
    """A message as the message page shows it. When `malformed`, only the raw text
    (raw_text) is worth showing: headers and bodies are empty."""
    malformed: bool
    headers: list[tuple[str, str]] = field(default_factory=list)
    text: str | None = None
    html: str | None = None
    attachments: list[Attachment] = field(default_factory=list)


def raw_text(raw: bytes) -> str:
    """The bytes as text, whatever they are: how a malformed message is shown."""
    return raw.decode("utf-8", "replace")


def read(raw: bytes, *, malformed: bool = False) -> Readable:
    """Headers (decoded), text and HTML bodies, attachments. A message already marked
    malformed, or one that cannot be parsed, comes back malformed and empty."""
    message = None if malformed else _parse(raw)
    if message is None:
        return Readable(malformed=True)
    try:
        html_part, text_part = _bodies(message)
        return Readable(
            malformed=False, headers=_headers(message),
            text=_text(text_part) if text_part is not None else None,
            html=_text(html_part) if html_part is not None else None,
            attachments=[a for a, _part in _attachments(message, (html_part, text_part))])
    except Exception:  # the email package has bugs on hostile input: show it raw instead
        log.warning("cannot read a message of %d bytes as MIME: shown raw", len(raw),
                    exc_info=True)
        return Readable(malformed=True)


def attachment(raw: bytes, index: int, *, malformed: bool = False
               ) -> tuple[Attachment, bytes] | None:
    """One attachment (as `read` numbers them) and its decoded bytes; None if no such one."""
    message = None if malformed else _parse(raw)
    if message is None:
        return None
    try:
        for found, part in _attachments(message, _bodies(message)):
            if found.index == index:
                return found, _payload(part)
    except Exception:  # as in read(): hostile input must not become a server error
        log.warning("cannot read attachment %d of a message", index, exc_info=True)
    return None


def html_document(raw: bytes, *, malformed: bool = False,
                  limit: int = INLINE_DATA_LIMIT) -> str | None:
    """The HTML body for the sandboxed frame, its cid: references replaced with data: URIs
    of the inline parts (up to `limit` bytes in all). Nothing else is rewritten: remote
    URLs stay, and the frame's Content-Security-Policy decides whether they load.
    None when the message has no HTML body."""
    message = None if malformed else _parse(raw)
    if message is None:
        return None
    try:
        html_part, text_part = _bodies(message)
        if html_part is None:
            return None
        inline = {a.content_id: part for a, part in _attachments(message, (html_part, text_part))
                  if a.content_id}
        return _inline_cids(_text(html_part), inline, limit)
    except Exception:  # as in read()
        log.warning("cannot make the HTML of a message", exc_info=True)
        return None


def _parse(raw: bytes):
    if not looks_like_mime(raw):
        return None
    try:
        return BytesParser(policy=email.policy.default).parsebytes(raw)
    except Exception:  # the email package has bugs on hostile input
        log.warning("cannot parse a message of %d bytes", len(raw), exc_info=True)
        return None


def _clean(text: str) -> str:
    """Text without lone surrogates (8-bit bytes the parser kept undecoded), which could
    not be encoded in the page: read as UTF-8, the usual case, or replaced."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def _header_value(message, name: str, value) -> str:
    try:
        text = str(message.policy.header_fetch_parse(name, value))
    except Exception:  # an undecodable header is shown as it came
        text = str(value)
    return _clean(" ".join(text.split()))


def _headers(message) -> list[tuple[str, str]]:
    return [(_clean(name), _header_value(message, name, value))
            for name, value in message.raw_items()]


def _bodies(message) -> tuple:
    """The parts that are the message's HTML and plain text (either may be None)."""
    return (message.get_body(preferencelist=("html",)),
            message.get_body(preferencelist=("plain",)))


def _text(part) -> str:
    """A text part decoded with its charset; an unknown charset reads as UTF-8."""
    payload = part.get_payload(decode=True) or b""
    if not isinstance(payload, bytes):
        payload = str(payload).encode("utf-8", "replace")
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except (LookupError, ValueError, TypeError):
        return payload.decode("utf-8", "replace")


def _leaves(part):
    """The parts that hold content, in order: multiparts are opened, attached messages
    (message/*) are kept whole."""
    if part.get_content_maintype() == "multipart" and part.is_multipart():
        for child in part.iter_parts():
            yield from _leaves(child)
    else:
        yield part


def _payload(part) -> bytes:
    """A part's bytes: decoded from its transfer encoding, or an attached message whole."""
    payload = part.get_payload()
    if isinstance(payload, list):  # message/rfc822 and friends
        return b"".join(inner.as_bytes(policy=email.policy.compat32) for inner in payload)
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _filename(part, index: int, content_type: str) -> str:
    try:
        name = part.get_filename() or ""
    except Exception:  # an RFC 2231 name in a charset Python does not know
        name = ""
    name = _clean(" ".join(str(name).split()))
    if name:
        return name
    if content_type == "message/rfc822":
        extension = ".eml"
    else:
        extension = mimetypes.guess_extension(content_type) or ".bin"
    return f"part-{index + 1}{extension}"


def _attachments(message, bodies) -> list:
    """(Attachment, part) for every part that is not one of the bodies."""
    found = []
    for part in _leaves(message):
        if any(part is body for body in bodies):
            continue
        index = len(found)
        content_type = part.get_content_type()
        content_id = _header(part, "Content-ID").strip("<> ")
        disposition = part.get_content_disposition()
        found.append((Attachment(
            index=index, filename=_filename(part, index, content_type),
            content_type=content_type, size=len(_payload(part)), content_id=content_id,
            inline=disposition == "inline" or (bool(content_id) and disposition is None)),
            part))
    return found


def _inline_cids(html: str, inline: dict, limit: int) -> str:
    budget = [limit]

    def data_uri(match: re.Match) -> str:
        part = inline.get(urllib.parse.unquote(match.group(1)))
        if part is None:
            return match.group(0)
        encoded = base64.b64encode(_payload(part)).decode("ascii")
        if len(encoded) > budget[0]:
            return match.group(0)
        budget[0] -= len(encoded)
        return f"data:{part.get_content_type()};base64,{encoded}"

    return CID_URL.sub(data_uri, html)
