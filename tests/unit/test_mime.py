"""Reading caught messages for people: bodies, headers, attachments, the HTML for the frame.

Messages come from code under test, so garbage is as normal as clean MIME: nothing here
may raise, and what cannot be read is shown raw.
"""

from __future__ import annotations

import base64
from email.message import EmailMessage

import pytest

from appliance import mime

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
PDF = b"%PDF-1.4\n% not really a pdf\n"


def rich_message() -> bytes:
    """multipart/mixed: alternative (text, related (html, cid image)), a PDF, a mail."""
    message = EmailMessage()
    message["From"] = "Odoo <odoo@example.com>"
    message["To"] = "Zoë Müller <zoe@example.com>"
    message["Subject"] = "Ihre Rechnung – März"
    message["Date"] = "Wed, 01 May 2024 10:00:00 +0000"
    message.set_content("Hello Zoë, see the invoice.")
    message.add_alternative(
        '<p>Hello <b>Zoë</b></p><img src="cid:logo@odoo">'
        '<img src="https://tracker.example.com/open.gif">', subtype="html")
    message.get_payload()[1].add_related(PNG, "image", "png", cid="<logo@odoo>")
    message.add_attachment(PDF, maintype="application", subtype="pdf",
                           filename="Rechnung März.pdf")
    inner = EmailMessage()
    inner["Subject"] = "forwarded"
    inner.set_content("inner body")
    message.add_attachment(inner)
    return message.as_bytes()


def test_rich_message_has_decoded_headers_both_bodies_and_its_attachments():
    readable = mime.read(rich_message())
    assert not readable.malformed
    headers = dict(readable.headers)
    assert headers["Subject"] == "Ihre Rechnung – März"
    assert headers["To"] == "Zoë Müller <zoe@example.com>"
    assert readable.text.strip() == "Hello Zoë, see the invoice."
    assert "<b>Zoë</b>" in readable.html
    kinds = [(a.content_type, a.filename, a.inline, a.content_id) for a in readable.attachments]
    assert kinds == [("image/png", "part-1.png", True, "logo@odoo"),
                     ("application/pdf", "Rechnung März.pdf", False, ""),
                     ("message/rfc822", "part-3.eml", False, "")]
    assert [a.index for a in readable.attachments] == [0, 1, 2]
    assert readable.attachments[1].size == len(PDF)


def test_an_attachment_comes_back_decoded_by_its_index():
    raw = rich_message()
    found, data = mime.attachment(raw, 1)
    assert found.filename == "Rechnung März.pdf" and data == PDF
    assert mime.attachment(raw, 0)[1] == PNG
    assert b"inner body" in mime.attachment(raw, 2)[1]
    assert mime.attachment(raw, 3) is None


def test_html_document_puts_inline_images_in_data_uris_and_leaves_remote_urls_alone():
    document = mime.html_document(rich_message())
    encoded = base64.b64encode(PNG).decode()
    assert f'<img src="data:image/png;base64,{encoded}">' in document
    assert "cid:" not in document
    assert '<img src="https://tracker.example.com/open.gif">' in document


def test_html_document_keeps_cid_references_past_the_size_limit_or_unknown():
    raw = rich_message().replace(b"cid:logo@odoo", b"cid:logo@odoo\"><img src=\"cid:nope@odoo")
    document = mime.html_document(raw, limit=10)
    assert 'src="cid:logo@odoo"' in document and 'src="cid:nope@odoo"' in document


def test_a_message_without_html_has_no_html_document():
    message = EmailMessage()
    message["Subject"] = "plain"
    message.set_content("only text")
    assert mime.html_document(message.as_bytes()) is None
    assert mime.read(message.as_bytes()).html is None


@pytest.mark.parametrize("raw", [
    b"\x00\xff\xfe\x80 garbage \x1b[31m",
    b"just a line of text without any header\n\nand another",
    b"",
    b": no name\r\n\r\nbody",
])
def test_garbage_and_headerless_bytes_are_malformed_and_shown_raw(raw):
    readable = mime.read(raw)
    assert readable.malformed
    assert readable.headers == [] and readable.text is None and readable.html is None
    assert mime.html_document(raw) is None
    assert mime.attachment(raw, 0) is None
    assert mime.raw_text(raw) == raw.decode("utf-8", "replace")


def test_a_message_marked_malformed_is_not_parsed():
    readable = mime.read(rich_message(), malformed=True)
    assert readable.malformed and readable.attachments == []
    assert mime.html_document(rich_message(), malformed=True) is None


def test_unknown_charsets_read_as_utf8_without_raising():
    raw = ("Subject: =?x-bogus?q?caf=E9?=\r\nFrom: a@example.com\r\n"
           "Content-Type: multipart/alternative; boundary=b\r\n\r\n"
           "--b\r\nContent-Type: text/plain; charset=x-bogus\r\n\r\ncafé plain\r\n"
           "--b\r\nContent-Type: text/html; charset=\"utf-8\x01\"\r\n\r\n<p>café</p>\r\n"
           "--b--\r\n").encode()
    readable = mime.read(raw)
    assert not readable.malformed
    assert "café plain" in readable.text and "<p>café</p>" in readable.html
    assert dict(readable.headers)["Subject"].startswith("caf")


def test_raw_8bit_headers_are_read_as_utf8():
    raw = "Subject: Grüße aus Köln\r\nFrom: a@example.com\r\n\r\nbody\r\n".encode()
    readable = mime.read(raw)
    assert dict(readable.headers)["Subject"] == "Grüße aus Köln"
    assert readable.text.strip() == "body"


def test_a_part_with_broken_base64_still_downloads():
    raw = (b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
           b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
           b"Content-Disposition: attachment; filename*=x-bogus''%E9t%E9.bin\r\n\r\n"
           b"!!!not base64===\r\n--b--\r\n")
    readable = mime.read(raw)
    assert [a.content_type for a in readable.attachments] == ["application/octet-stream"]
    found, data = mime.attachment(raw, 0)
    assert found.filename and isinstance(data, bytes)


def test_the_index_of_a_well_formed_multipart_message_is_not_malformed():
    summary = mime.summary(rich_message())
    assert not summary["malformed"]
    assert summary["subject"] == "Ihre Rechnung – März"


def test_the_index_marks_a_header_block_starting_with_a_continuation_malformed():
    assert mime.summary(b" X: y\r\nSubject: a\r\n\r\nbody")["malformed"]
