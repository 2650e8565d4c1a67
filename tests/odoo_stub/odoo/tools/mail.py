"""Email address and body helpers, named like Odoo's `odoo.tools.mail` (standard
library only: no lxml, no idna).

What `ir.mail_server` needs: splitting and normalising addresses, the domain
of an address, `formataddr`, `encapsulate_email` (a sender's name on the
notification address), tracking Message-Ids and `html2plaintext` for the text
part of an HTML mail.
"""

import html
import random
import re
import socket
import time
from email.utils import getaddresses

_email_re = re.compile(r"([^ ,;<@]+@[^> ,;]+)")
_addr_escapes_re = re.compile(r'[\\"]')


def email_split_tuples(text):
    """(name, address) pairs found in `text`, an address header or list."""
    if not text:
        return []
    pairs = [(name, address) for name, address in getaddresses([text]) if address and "@" in address]
    if any(address.startswith("@") for _name, address in pairs):
        return [("", found) for found in _email_re.findall(text) if not found.startswith("@")]
    return pairs


def email_split(text):
    """The addresses found in `text`."""
    return [address for _name, address in email_split_tuples(text)]


def email_normalize(text, strict=True):
    """'Name <NaMe@DoMaIn.CoM>' -> 'name@domain.com'; False when no address (or, when
    strict, more than one) is found. A non-ASCII local part is kept as is."""
    emails = email_split(text)
    if not emails or (strict and len(emails) != 1):
        return False
    local_part, at, domain = emails[0].rpartition("@")
    if local_part.isascii():
        local_part = local_part.lower()
    return local_part + at + domain.lower()


def email_domain_extract(email):
    """'info@example.com' -> 'example.com' (False without a valid address)."""
    normalized = email_normalize(email)
    return normalized.split("@")[1] if normalized else False


def email_domain_normalize(domain):
    """The domain in lower case, False when empty or an address."""
    if not domain or "@" in domain:
        return False
    return domain.lower()


def formataddr(pair, charset="utf-8"):
    """('John Doe', 'john@example.com') -> '"John Doe" <john@example.com>';
    only the address when the name is empty."""
    name, address = pair
    if not name:
        return address
    try:
        name.encode(charset)
    except UnicodeEncodeError:
        import base64
        encoded = base64.b64encode(name.encode("utf-8")).decode("ascii")
        return f"=?utf-8?b?{encoded}?= <{address}>"
    name = _addr_escapes_re.sub(r"\\\g<0>", name)
    return f'"{name}" <{address}>'


def encapsulate_email(old_email, new_email):
    """The name of `old_email` (or its local part) on the address of `new_email`:
    ('"Admin" <admin@gmail.com>', 'notifications@odoo.com') -> '"Admin" <notifications@odoo.com>'."""
    old = getaddresses([old_email])
    if not old or not old[0]:
        return old_email
    new = getaddresses([new_email])
    if not new or not new[0]:
        return None
    old_name, old_address = old[0]
    return formataddr((old_name or old_address.split("@")[0], new[0][1]))


def generate_tracking_message_id(res_id):
    """A Message-Id naming the record it is about: <random.time-openerp-RES_ID@host>."""
    rnd = ("%.15f" % random.SystemRandom().random())[2:]
    return "<%s.%.15f-openerp-%s@%s>" % (rnd, time.time(), res_id, socket.gethostname())


def html2plaintext(source):
    """A plain text version of an HTML body, close to Odoo's: bold as *x*,
    paragraphs and <br> as line breaks, links numbered and listed at the end."""
    if not (source and source.strip()):
        return ""
    text = source
    body = re.search(r"<body[^>]*>(.*)</body>", text, re.S | re.I)
    if body:
        text = body.group(1)
    urls = []

    def _link(match):
        urls.append(match.group(1))
        return f"{match.group(2)} [{len(urls)}]"

    text = re.sub(r"<a\b[^>]*?href=[\"']([^\"']+)[\"'][^>]*>(.*?)</a>", _link, text, flags=re.S | re.I)
    text = text.replace("\r", "")
    for tag, mark in (("strong", "*"), ("b", "*"), ("h3", "*"), ("h2", "**"), ("h1", "**"), ("em", "/")):
        text = re.sub(rf"</?{tag}\s*>", mark, text, flags=re.I)
    text = re.sub(r"<tr\b[^>]*>", "\n", text, flags=re.I)
    text = re.sub(r"</p\s*>", "\n", text, flags=re.I)
    text = re.sub(r"<br\s*/?>", "\n", text, flags=re.I)
    text = re.sub(r"<.*?>", " ", text, flags=re.S)
    text = text.replace("  ", " ")
    text = html.unescape(text)
    text = "\n".join(line.strip() for line in text.splitlines())
    text = text.replace("\n\n", "\n")
    if urls:
        text += "\n\n" + "".join(f"[{index}] {url}\n" for index, url in enumerate(urls, start=1))
    return text.strip()
