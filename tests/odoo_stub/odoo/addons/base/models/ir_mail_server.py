"""Outgoing mail servers and real SMTP delivery, the way Odoo 18's base does it.

`build_email()` makes an `email.message.EmailMessage` shaped like Odoo's, and
`send_email()` delivers it with smtplib through the server Odoo would choose:
`mail_server_id` when given; else explicit `smtp_*` arguments; else the first
active `ir.mail_server` (by sequence) whose `from_filter` matches the sender,
then one without filter, then any; else the `smtp_*` options (command line or
config file; `smtp_ssl` means STARTTLS). As in Odoo, a failure while connecting
or logging in raises the smtplib/socket error itself; a failure while sending
is logged (INFO) and raised as `MailDeliveryException`; success logs nothing.
While tests run (`odoo.modules.module.current_test`) nothing is sent.

Not in this stand-in: SSL client certificates stored on the record
(`smtp_authentication = 'certificate'` only skips the login), `smtp_debug` and
`max_email_size` fields, `test_smtp_connection`.
"""

import datetime
import email.policy
import logging
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.modules import module as modules
from odoo.tools import config
from odoo.tools.mail import (
    email_domain_extract, email_domain_normalize, email_normalize, encapsulate_email,
    formataddr, generate_tracking_message_id, html2plaintext,
)

_logger = logging.getLogger(__name__)
_test_logger = logging.getLogger("odoo.tests")

SMTP_TIMEOUT = 60


class MailDeliveryException(Exception):
    """Specific exception subclass for mail delivery errors"""


# Identification headers (Message-Id, References...) are never folded, as in Odoo:
# MTAs rewrite folded ones and threads break.
RFC5322_IDENTIFICATION_HEADERS = {"message-id", "in-reply-to", "references", "resent-msg-id"}
_NO_FOLD_POLICY = email.policy.SMTP.clone(max_line_length=None)


class IdentificationFieldsNoFoldPolicy(email.policy.EmailPolicy):
    def _fold(self, name, value, *args, **kwargs):
        if name.lower() in RFC5322_IDENTIFICATION_HEADERS:
            return _NO_FOLD_POLICY._fold(name, value, *args, **kwargs)
        return super()._fold(name, value, *args, **kwargs)


SMTP_POLICY = IdentificationFieldsNoFoldPolicy(linesep="\r\n")

_address_pattern = re.compile(r'([^" ,<@]+@[^>" ,]+)')


def extract_rfc2822_addresses(text):
    """The plain addresses found in `text`, their domain punycoded; malformed ones
    are left out."""
    if not text:
        return []
    found = []
    for candidate in _address_pattern.findall(text):
        local, _at, domain = candidate.rpartition("@")
        try:
            domain = domain if domain.isascii() else domain.encode("idna").decode("ascii")
        except UnicodeError:
            continue
        found.append(formataddr(("", f"{local}@{domain}"), charset="ascii"))
    return found


def _debug_to_logger(self, *args):
    _logger.debug(" ".join(str(a) for a in args))


# smtplib's debug output goes to the log (DEBUG), as in Odoo
smtplib.SMTP._print_debug = _debug_to_logger


class IrMailServer(models.Model):
    _name = "ir.mail_server"
    _description = "Mail Server"
    _order = "sequence, id"

    NO_VALID_RECIPIENT = ("At least one valid recipient address should be "
                          "specified for outgoing emails (To/Cc/Bcc)")
    NO_FOUND_FROM = ("You must either provide a sender address explicitly or configure "
                     "using the combination of `mail.catchall.domain` and `mail.default.from` "
                     "ICPs, in the server configuration file or with the --email-from startup "
                     "parameter.")
    NO_FOUND_SMTP_FROM = "The Return-Path or From header is required for any outbound email"
    NO_VALID_FROM = "Malformed 'Return-Path' or 'From' address. It should contain one valid plain ASCII email"

    name = fields.Char(required=True)
    from_filter = fields.Char("FROM Filtering")
    smtp_host = fields.Char("SMTP Server")
    smtp_port = fields.Integer("SMTP Port", default=25)
    smtp_authentication = fields.Selection(
        [("login", "Username"), ("certificate", "SSL Certificate"), ("cli", "Command Line Interface")],
        default="login")
    smtp_user = fields.Char("Username")
    smtp_pass = fields.Char("Password")
    smtp_encryption = fields.Selection(
        [("none", "None"), ("starttls", "TLS (STARTTLS)"), ("ssl", "SSL/TLS")], default="none")
    sequence = fields.Integer(default=10)
    active = fields.Boolean(default=True)

    # ------------------------------------------------------------------ connection

    def connect(self, host=None, port=None, user=None, password=None, encryption=None,
                smtp_from=None, ssl_certificate=None, ssl_private_key=None, smtp_debug=False,
                mail_server_id=None, allow_archived=False):
        """A new, logged in smtplib connection (None while tests run), carrying the
        `from_filter` and `smtp_from` that `_prepare_email_message` uses."""
        if modules.current_test:
            return None
        mail_server = None
        if mail_server_id:
            mail_server = self.with_context(active_test=False).browse(mail_server_id)
            if not allow_archived and not mail_server.active:
                raise UserError(
                    f'The server "{mail_server.display_name}" cannot be used because it is archived.')
        elif not host:
            mail_server, smtp_from = self._find_mail_server(smtp_from)

        ssl_context = None
        if mail_server and mail_server.smtp_authentication != "cli":
            smtp_server = mail_server.smtp_host
            smtp_port = mail_server.smtp_port
            if mail_server.smtp_authentication == "certificate":
                smtp_user = smtp_password = None
            else:
                smtp_user = mail_server.smtp_user
                smtp_password = mail_server.smtp_pass
            smtp_encryption = mail_server.smtp_encryption
            from_filter = mail_server.from_filter
        else:
            # explicit arguments, or the options (command line / config file)
            smtp_server = host or config.get("smtp_server")
            smtp_port = config.get("smtp_port", 25) if port is None else port
            smtp_user = user or config.get("smtp_user")
            smtp_password = password or config.get("smtp_password")
            from_filter = mail_server.from_filter if mail_server else self._get_default_from_filter()
            smtp_encryption = encryption
            if smtp_encryption is None and config.get("smtp_ssl"):
                smtp_encryption = "starttls"  # smtp_ssl means STARTTLS since Odoo 7
            certificate = ssl_certificate or config.get("smtp_ssl_certificate_filename")
            private_key = ssl_private_key or config.get("smtp_ssl_private_key_filename")
            if certificate and private_key:
                ssl_context = _client_certificate_context(certificate, private_key)

        if not smtp_server:
            raise UserError("Missing SMTP Server\nPlease define at least one SMTP server, "
                            "or provide the SMTP parameters explicitly.")

        if smtp_encryption == "ssl":
            connection = smtplib.SMTP_SSL(smtp_server, smtp_port, timeout=SMTP_TIMEOUT,
                                          context=ssl_context)
        else:
            connection = smtplib.SMTP(smtp_server, smtp_port, timeout=SMTP_TIMEOUT)
        connection.set_debuglevel(smtp_debug)
        if smtp_encryption == "starttls":
            connection.starttls(context=ssl_context)
        if smtp_user:
            local, at, domain = smtp_user.rpartition("@")
            if at and not domain.isascii():
                smtp_user = local + at + domain.encode("idna").decode("ascii")
            (mail_server or self)._smtp_login(connection, smtp_user, smtp_password or "")
        connection.ehlo_or_helo_if_needed()
        connection.from_filter = from_filter
        connection.smtp_from = smtp_from
        return connection

    def _smtp_login(self, connection, smtp_user, smtp_password):
        """Authenticate the connection (addons override it for other methods)."""
        connection.login(smtp_user, smtp_password)

    # ------------------------------------------------------------------ message

    def build_email(self, email_from, email_to, subject, body, email_cc=None, email_bcc=None, reply_to=False,
                    attachments=None, message_id=None, references=None, object_id=False, subtype="plain",
                    headers=None, body_alternative=None, subtype_alternative="plain"):
        """An RFC 2822 message (`email.message.EmailMessage`), as Odoo builds it.

        `email_to`, `email_cc`, `email_bcc`: lists of addresses; `subtype='html'`
        without `body_alternative` adds a text part (multipart/alternative);
        `attachments`: (filename, content bytes, mimetype) tuples; `headers`: a dict
        of extra headers; `object_id` ('res_id-model') goes into the Message-Id.
        """
        email_from = (email_from or self.env.context.get("domain_notifications_email")
                      or self._get_default_from_address())
        assert email_from, self.NO_FOUND_FROM
        headers = headers or {}
        email_cc = email_cc or []
        email_bcc = email_bcc or []

        msg = EmailMessage(policy=SMTP_POLICY)
        if not message_id:
            # Odoo calls make_msgid(), whose domain is the host's FQDN: 'localhost' in
            # the containers measured (see the contract)
            message_id = (generate_tracking_message_id(object_id) if object_id
                          else make_msgid(domain="localhost"))
        msg["Message-Id"] = message_id
        if references:
            msg["references"] = references
        msg["Subject"] = subject
        msg["From"] = email_from
        del msg["Reply-To"]
        msg["Reply-To"] = reply_to or email_from
        msg["To"] = email_to
        if email_cc:
            msg["Cc"] = email_cc
        if email_bcc:
            msg["Bcc"] = email_bcc
        # naive UTC, shown as "-0000" like Odoo's datetime.utcnow()
        msg["Date"] = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        for key, value in headers.items():
            msg[key] = value

        email_body = body or ""
        if subtype == "html" and not body_alternative:
            msg["MIME-Version"] = "1.0"
            msg.add_alternative(html2plaintext(email_body), subtype="plain", charset="utf-8")
            msg.add_alternative(email_body, subtype=subtype, charset="utf-8")
        elif body_alternative:
            msg["MIME-Version"] = "1.0"
            msg.add_alternative(body_alternative, subtype=subtype_alternative, charset="utf-8")
            msg.add_alternative(email_body, subtype=subtype, charset="utf-8")
        else:
            msg.set_content(email_body, subtype=subtype, charset="utf-8")

        for filename, content, mimetype in attachments or []:
            maintype, subtype = mimetype.split("/") if mimetype and "/" in mimetype \
                else ("application", "octet-stream")
            msg.add_attachment(content, maintype, subtype, filename=filename)
        return msg

    @api.model
    def _get_default_bounce_address(self):
        """The envelope sender when the message has no Return-Path: --email-from."""
        return config.get("email_from")

    @api.model
    def _get_default_from_address(self):
        """The From when none is given: --email-from."""
        return config.get("email_from")

    @api.model
    def _get_default_from_filter(self):
        """The from_filter of the options' server: 'mail.default.from_filter', else --from-filter."""
        return self.env["ir.config_parameter"].get_param(
            "mail.default.from_filter", config.get("from_filter"))

    def _prepare_email_message(self, message, smtp_session):
        """(envelope sender, envelope recipients, message): the Bcc header is removed,
        the From may be rewritten to what the server accepts."""
        bounce_address = (self.env.context.get("domain_bounce_address") or message["Return-Path"]
                          or self._get_default_bounce_address() or message["From"])
        smtp_from = message["From"] or bounce_address
        assert smtp_from, self.NO_FOUND_SMTP_FROM

        email_to, email_cc, email_bcc = message["To"], message["Cc"], message["Bcc"]
        del message["Bcc"]
        smtp_to_list = [
            address
            for header in (email_to, email_cc, email_bcc)
            for address in extract_rfc2822_addresses(header)
            if address
        ]
        assert smtp_to_list, self.NO_VALID_RECIPIENT

        x_forge_to = message["X-Forge-To"]
        if x_forge_to:
            del message["X-Forge-To"]
            del message["To"]
            message["To"] = x_forge_to

        from_filter = getattr(smtp_session, "from_filter", False)
        smtp_from = getattr(smtp_session, "smtp_from", False) or smtp_from
        notifications_email = email_normalize(
            self.env.context.get("domain_notifications_email") or self._get_default_from_address())
        if (notifications_email and smtp_from == notifications_email
                and message["From"] != notifications_email):
            smtp_from = encapsulate_email(message["From"], notifications_email)

        if message["From"] != smtp_from:
            del message["From"]
            message["From"] = smtp_from

        if self._match_from_filter(bounce_address, from_filter):
            # the server accepts the bounce address's domain: use it as envelope sender
            smtp_from = bounce_address

        smtp_from_rfc2822 = extract_rfc2822_addresses(smtp_from)
        if not smtp_from_rfc2822:
            raise AssertionError(
                self.NO_VALID_FROM,
                f"Malformed 'Return-Path' or 'From' address: {smtp_from} - "
                "It should contain one valid plain ASCII email",
            )
        return smtp_from_rfc2822[-1], smtp_to_list, message

    # ------------------------------------------------------------------ sending

    @api.model
    def send_email(self, message, mail_server_id=None, smtp_server=None, smtp_port=None,
                   smtp_user=None, smtp_password=None, smtp_encryption=None,
                   smtp_ssl_certificate=None, smtp_ssl_private_key=None,
                   smtp_debug=False, smtp_session=None):
        """Send `message` now (no queue, no retry); return its Message-Id.

        Envelope: from the Return-Path (else --email-from, else From), to To+Cc+Bcc.
        Connection and login errors are raised as they are (smtplib/socket errors,
        UserError); an error while sending is logged and raised as
        MailDeliveryException.
        """
        smtp = smtp_session
        if not smtp:
            smtp = self.connect(
                smtp_server, smtp_port, smtp_user, smtp_password, smtp_encryption,
                smtp_from=message["From"], ssl_certificate=smtp_ssl_certificate,
                ssl_private_key=smtp_ssl_private_key, smtp_debug=smtp_debug,
                mail_server_id=mail_server_id,
            )

        smtp_from, smtp_to_list, message = self._prepare_email_message(message, smtp)

        if modules.current_test:
            _test_logger.debug("skip sending email in test mode")
            return message["Message-Id"]

        try:
            message_id = message["Message-Id"]
            smtp.send_message(message, smtp_from, smtp_to_list)
            if not smtp_session:
                smtp.quit()
        except smtplib.SMTPServerDisconnected:
            raise
        except Exception as e:
            # `smtp_server` is the argument: 'None' when the server came from a record
            # or the options, as in Odoo
            msg = (f"Mail delivery failed via SMTP server '{smtp_server}'.\n"
                   f"{e.__class__.__name__}: {e}")
            _logger.info(msg)
            raise MailDeliveryException("Mail Delivery Failed", msg)  # noqa: B904  (as Odoo)
        return message_id

    def _find_mail_server(self, email_from, mail_servers=None):
        """(server record or None for the options, sender to use), as Odoo chooses:
        a server whose from_filter matches the sender's address, then its domain,
        then the same for the notification address (--email-from), then the first
        server without from_filter, then the first server; archived ones never."""
        email_from_normalized = email_normalize(email_from)
        email_from_domain = email_domain_extract(email_from_normalized)
        notifications_email = (self.env.context.get("domain_notifications_email")
                               or email_normalize(self._get_default_from_address()))
        notifications_domain = email_domain_extract(notifications_email)

        if mail_servers is None:
            mail_servers = self.search([], order="sequence, id")
        mail_servers = [server for server in mail_servers if server.active]

        def first_match(target, normalize):
            for server in mail_servers:
                if server.from_filter and any(
                    normalize(part.strip()) == target for part in server.from_filter.split(",")
                ):
                    return server
            return None

        if email_from:
            server = first_match(email_from_normalized, email_normalize) \
                or first_match(email_from_domain, email_domain_normalize)
            if server:
                return server, email_from
        if notifications_email:
            server = first_match(notifications_email, email_normalize) \
                or first_match(notifications_domain, email_domain_normalize)
            if server:
                return server, notifications_email

        unfiltered = [server for server in mail_servers if not server.from_filter]
        if unfiltered:
            return unfiltered[0], notifications_email or email_from
        if mail_servers:
            _logger.warning("No mail server matches the from_filter, using %s as fallback",
                            notifications_email or email_from)
            return mail_servers[0], notifications_email or email_from

        from_filter = self._get_default_from_filter()
        if self._match_from_filter(email_from, from_filter):
            return None, email_from
        if notifications_email and self._match_from_filter(notifications_email, from_filter):
            return None, notifications_email
        _logger.warning(
            "The from filter of the CLI configuration does not match the notification email "
            "or the user email, using %s as fallback", notifications_email or email_from)
        return None, notifications_email or email_from

    @api.model
    def _match_from_filter(self, email_from, from_filter):
        """Whether `email_from` matches `from_filter` (addresses or domains, comma
        separated; an empty filter matches everything)."""
        if not from_filter:
            return True
        normalized = email_normalize(email_from)
        domain = email_domain_extract(normalized)
        for part in (part.strip() for part in from_filter.split(",")):
            if not part:
                continue
            if "@" in part and email_normalize(part) == normalized:
                return True
            if "@" not in part and email_domain_normalize(part) == domain:
                return True
        return False


def _client_certificate_context(certificate, private_key):
    """A TLS context presenting a client certificate; like Odoo's, it does not
    verify the server's certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        context.load_cert_chain(certificate, keyfile=private_key)
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"Could not load your certificate / private key. \n{exc}") from exc
    return context
