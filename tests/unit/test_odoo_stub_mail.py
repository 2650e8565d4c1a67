"""The stand-in's `odoo-bin shell` and its outgoing mail (`ir.mail_server`).

Scripts are piped into `odoo-bin shell` (stdin not a terminal, as through
`docker exec -i`) run as user nobody under Debian's python3, against one
database with base installed; an aiosmtpd server in the test process receives
the mail. Same requirements and fixtures as test_odoo_stub.py. The shell rolls
its transaction back, so scripts creating mail server records leave nothing.
"""

import email
import email.policy
import os
import secrets
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from test_odoo_stub import (  # noqa: F401  (fixtures are found by name)
    DEBIAN_PYTHON, NOBODY, ROLE, RUN_TIMEOUT, admin_sql, free_port, requirements, role_password,
    stub_tree, workdir,
)

pytestmark = pytest.mark.slow  # the stand-in Odoo run in subprocesses, a database a test

SMTP_USER, SMTP_PASSWORD = "mailer", "s3cret"


# ----------------------------------------------------------------- SMTP servers


class Recorder:
    """aiosmtpd handler keeping every envelope; refuses recipients @refused.test."""

    def __init__(self):
        self.envelopes = []
        self.logins = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.endswith("@refused.test"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            self.logins.append(login)
            # handled=False: aiosmtpd then answers 535 itself on failure
            return AuthResult(success=(login, password) == (SMTP_USER, SMTP_PASSWORD), handled=False)
        return AuthResult(success=False, handled=False)

    @property
    def messages(self):
        return [email.message_from_bytes(e.original_content, policy=email.policy.default)
                for e in self.envelopes]


@pytest.fixture
def smtp_servers():
    """start(**kwargs) -> (recorder, port) of a new aiosmtpd server on 127.0.0.1
    (login required when `login=True`)."""
    controllers = []

    def start(login=False, **kwargs):
        recorder = Recorder()
        port = free_port()
        if login:
            kwargs["authenticator"] = recorder.authenticate
            kwargs.setdefault("auth_require_tls", False)
        controller = Controller(recorder, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        controllers.append(controller)
        return recorder, port

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture(scope="module")
def certificate(requirements, tmp_path_factory):
    """(certificate file, key file) of a self-signed certificate for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("smtp-tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    done = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"openssl could not make a certificate: {done.stderr}")
    return str(cert), str(key)


def tls_context(certificate):
    import ssl
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


# ----------------------------------------------------------------- the shell


@pytest.fixture(scope="module")
def mail_database(role_password, stub_tree):
    """A database with base installed by the stand-in, shared by the module's tests."""
    name = f"stubmail_{secrets.token_hex(4)}"
    admin_sql(f"CREATE DATABASE {name} OWNER {ROLE}")
    data_dir = Path(tempfile.mkdtemp(prefix="odoo-stub-mail-"))
    data_dir.chmod(0o777)
    done = subprocess.run(
        NOBODY + [DEBIAN_PYTHON, str(stub_tree / "odoo-bin"), "-d", name, "--db_host", "127.0.0.1",
                  "-r", ROLE, "-D", str(data_dir), "--stop-after-init", "--without-demo=all"],
        env=_env(role_password), capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, done.stderr
    yield name
    admin_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", check=False)
    shutil.rmtree(data_dir, ignore_errors=True)


def _env(password, **extra):
    return {"PATH": "/usr/bin:/bin", "PGPASSWORD": password, "PYTHONDONTWRITEBYTECODE": "1", **extra}


class Shell:
    """Runs `odoo-bin shell` with a script on stdin, as nobody."""

    def __init__(self, stub_tree, workdir, database, password):
        self.odoo_bin = str(stub_tree / "odoo-bin")
        self.workdir = workdir
        self.database = database
        self.password = password
        self.logfile = workdir / "odoo.log"

    def server_options(self):
        return ["-d", self.database, "--db_host", "127.0.0.1", "-r", ROLE, "-D", str(self.workdir / "data")]

    def run(self, script, options=(), env=None, logfile=True):
        """(exit code, stdout, stderr, log) of one script."""
        self.logfile.unlink(missing_ok=True)
        command = NOBODY + [DEBIAN_PYTHON, self.odoo_bin, "shell", *options]
        if logfile:
            command += ["--logfile", str(self.logfile)]
        done = subprocess.run(command, input=textwrap.dedent(script), env=env or _env(self.password),
                              capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=self.workdir)
        log = self.logfile.read_text() if self.logfile.exists() else ""
        return done.returncode, done.stdout, done.stderr, log

    def send(self, script, smtp_port=None, extra=(), **kwargs):
        """Run `script` with the server options and, given `smtp_port`, --smtp options
        pointing at 127.0.0.1 with the login."""
        options = self.server_options()
        if smtp_port:
            options += ["--smtp", "127.0.0.1", "--smtp-port", str(smtp_port),
                        "--smtp-user", SMTP_USER, "--smtp-password", SMTP_PASSWORD]
        return self.run(script, [*options, *extra], **kwargs)

    def sql(self, query):
        return admin_sql(query, database=self.database).stdout.strip()


@pytest.fixture
def shell(stub_tree, workdir, mail_database, role_password):
    return Shell(stub_tree, workdir, mail_database, role_password)


SEND_PLAIN = """\
mail = env['ir.mail_server']
message = mail.build_email(
    'Harness <harness@example.com>', ['someone@example.org'], 'Hello plain',
    'Hello from odoo-bin shell', email_cc=['copy@example.org'], email_bcc=['hidden@example.org'])
print(mail.send_email(message))
"""


def mail_server_record(port, active=True, sequence=10, login=True, host="127.0.0.1"):
    """Script lines creating an ir.mail_server record."""
    credentials = f"'smtp_user': {SMTP_USER!r}, 'smtp_pass': {SMTP_PASSWORD!r}, " if login else ""
    return (f"env['ir.mail_server'].create({{'name': 'record {port}', 'smtp_host': {host!r}, "
            f"'smtp_port': {port}, {credentials}'active': {active}, 'sequence': {sequence}}})\n")


# ----------------------------------------------------------------- delivery


def test_a_shell_script_sends_through_the_smtp_options_with_login(shell, smtp_servers):
    sink, port = smtp_servers(login=True)
    code, stdout, stderr, log = shell.send(SEND_PLAIN, smtp_port=port)
    assert code == 0, stderr + log
    assert sink.logins == [SMTP_USER]
    (envelope,), (message,) = sink.envelopes, sink.messages
    assert envelope.mail_from == "harness@example.com"
    assert envelope.rcpt_tos == ["someone@example.org", "copy@example.org", "hidden@example.org"]
    assert "Bcc" not in message
    assert message["From"] == "Harness <harness@example.com>"
    assert message["Reply-To"] == "Harness <harness@example.com>"
    assert (message["To"], message["Cc"]) == ("someone@example.org", "copy@example.org")
    assert message["Subject"] == "Hello plain"
    assert message["Date"].endswith("-0000")
    assert message["Message-Id"].startswith("<") and message["Message-Id"].endswith("@localhost>")
    assert message.get_content_type() == "text/plain"
    assert message.get_content().strip() == "Hello from odoo-bin shell"
    assert stdout == message["Message-Id"] + "\n", "send_email returns the Message-Id; nothing else on stdout"
    assert "ir_mail_server" not in log, "success logs nothing in base"
    assert "odoo.modules.registry: Registry loaded in" in log


def test_an_html_body_is_sent_as_multipart_alternative_with_a_text_part(shell, smtp_servers):
    sink, port = smtp_servers(login=True)
    code, _stdout, stderr, log = shell.send("""
        mail = env['ir.mail_server']
        mail.send_email(mail.build_email(
            'harness@example.com', ['someone@example.org'], 'Hello html',
            '<p>Hello <b>from</b> the shell</p><p>See <a href="https://example.org/x">this</a></p>',
            subtype='html', attachments=[('note.txt', b'attached bytes', 'text/plain')]))
    """, smtp_port=port)
    assert code == 0, stderr + log
    (message,) = sink.messages
    assert message.get_content_type() == "multipart/mixed"
    alternative, attachment = message.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    text, html = alternative.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert text.get_content().replace("\r\n", "\n").strip() == \
        "Hello *from* the shell\nSee this [1]\n\n[1] https://example.org/x"
    assert html.get_content_type() == "text/html"
    assert "<b>from</b>" in html.get_content()
    assert (attachment.get_filename(), attachment.get_content()) == ("note.txt", "attached bytes")


def test_an_active_mail_server_record_wins_over_the_options(shell, smtp_servers):
    options_sink, options_port = smtp_servers(login=True)
    record_sink, record_port = smtp_servers(login=True)
    code, _stdout, stderr, log = shell.send(mail_server_record(record_port) + SEND_PLAIN,
                                            smtp_port=options_port)
    assert code == 0, stderr + log
    assert (len(record_sink.envelopes), len(options_sink.envelopes)) == (1, 0)
    assert record_sink.logins == [SMTP_USER]


def test_the_record_with_the_lowest_sequence_is_used(shell, smtp_servers):
    first, first_port = smtp_servers()
    second, second_port = smtp_servers()
    script = (mail_server_record(second_port, sequence=20, login=False)
              + mail_server_record(first_port, sequence=5, login=False) + SEND_PLAIN)
    code, _stdout, stderr, log = shell.send(script)
    assert code == 0, stderr + log
    assert (len(first.envelopes), len(second.envelopes)) == (1, 0)


def test_an_inactive_mail_server_record_is_never_used(shell, smtp_servers):
    options_sink, options_port = smtp_servers(login=True)
    record_sink, record_port = smtp_servers(login=True)
    script = mail_server_record(record_port, active=False, sequence=1) + SEND_PLAIN
    code, _stdout, stderr, log = shell.send(script, smtp_port=options_port)
    assert code == 0, stderr + log
    assert (len(options_sink.envelopes), len(record_sink.envelopes)) == (1, 0)


def test_the_return_path_is_the_envelope_sender_and_email_from_fills_a_missing_from(shell, smtp_servers):
    sink, port = smtp_servers(login=True)
    code, _stdout, stderr, log = shell.send("""
        mail = env['ir.mail_server']
        message = mail.build_email(False, ['someone@example.org'], 'No from', 'body',
                                   headers={'Return-Path': 'bounce@example.net'})
        mail.send_email(message)
    """, smtp_port=port, extra=["--email-from", "notifications@example.com"])
    assert code == 0, stderr + log
    (envelope,), (message,) = sink.envelopes, sink.messages
    assert envelope.mail_from == "bounce@example.net"
    assert message["From"] == "notifications@example.com"


def test_the_config_file_from_odoo_rc_alone_is_enough(shell, smtp_servers):
    sink, port = smtp_servers(login=True)
    config = shell.workdir / "odoo.conf"
    config.write_text(textwrap.dedent(f"""\
        [options]
        db_host = 127.0.0.1
        db_user = {ROLE}
        db_name = {shell.database}
        data_dir = {shell.workdir / 'data'}
        logfile = {shell.logfile}
        smtp_server = 127.0.0.1
        smtp_port = {port}
        smtp_user = {SMTP_USER}
        smtp_password = {SMTP_PASSWORD}
        smtp_ssl = False
    """))
    config.chmod(0o644)
    code, stdout, stderr, log = shell.run(SEND_PLAIN + "print(env.cr.dbname)\n",
                                          env=_env(shell.password, ODOO_RC=str(config)), logfile=False)
    assert code == 0, stderr + log
    assert len(sink.envelopes) == 1 and sink.logins == [SMTP_USER]
    assert stdout.splitlines()[1] == shell.database
    assert f"Using configuration file at {config}" in log


def test_smtp_ssl_in_the_config_file_means_starttls(shell, smtp_servers, certificate):
    sink, port = smtp_servers(login=True, auth_require_tls=True, require_starttls=True,
                              tls_context=tls_context(certificate))
    config = shell.workdir / "odoo.conf"
    config.write_text(f"[options]\nsmtp_server = 127.0.0.1\nsmtp_port = {port}\nsmtp_ssl = True\n"
                      f"smtp_user = {SMTP_USER}\nsmtp_password = {SMTP_PASSWORD}\n")
    config.chmod(0o644)
    code, _stdout, stderr, log = shell.send(SEND_PLAIN, extra=["-c", str(config)])
    assert code == 0, stderr + log
    assert len(sink.envelopes) == 1 and sink.logins == [SMTP_USER]


def test_a_record_with_ssl_encryption_connects_with_implicit_tls(shell, smtp_servers, certificate):
    sink, port = smtp_servers(ssl_context=tls_context(certificate))
    script = (f"env['ir.mail_server'].create({{'name': 'tls', 'smtp_host': '127.0.0.1', "
              f"'smtp_port': {port}, 'smtp_encryption': 'ssl'}})\n") + SEND_PLAIN
    code, _stdout, stderr, log = shell.send(script)
    assert code == 0, stderr + log
    assert len(sink.envelopes) == 1


# ----------------------------------------------------------------- failures


def raised(stderr):
    """The last line of the last traceback on stderr: 'ExceptionClass: message'."""
    lines = stderr.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last):"))
    return next(line for line in lines[start + 1:] if line and not line.startswith(" "))


def test_nothing_listening_fails_the_script_with_the_connection_error_as_odoo_does(shell):
    code, stdout, stderr, log = shell.send(SEND_PLAIN, smtp_port=free_port())
    assert code == 1, stderr + log
    assert stdout == ""
    assert "Traceback (most recent call last):" in stderr
    assert raised(stderr).startswith("ConnectionRefusedError:")


def test_a_refused_delivery_raises_mail_delivery_exception_and_logs_it(shell, smtp_servers):
    _sink, port = smtp_servers(login=True)
    script = SEND_PLAIN.replace("['someone@example.org']", "['nobody@refused.test']") \
        .replace(", email_cc=['copy@example.org'], email_bcc=['hidden@example.org']", "")
    code, _stdout, stderr, log = shell.send(script, smtp_port=port)
    assert code == 1, stderr + log
    assert raised(stderr).startswith("odoo.addons.base.models.ir_mail_server.MailDeliveryException: "
                           "('Mail Delivery Failed', \"Mail delivery failed via SMTP server 'None'.")
    assert " INFO " in log and "odoo.addons.base.models.ir_mail_server: Mail delivery failed via " \
        "SMTP server 'None'.\nSMTPRecipientsRefused: " in log
    assert " WARNING " not in log, "no ResourceWarning for the connection left open, as in Odoo"


def test_a_wrong_login_fails_with_the_authentication_error(shell, smtp_servers):
    sink, port = smtp_servers(login=True)
    code, _stdout, stderr, _log = shell.send(SEND_PLAIN, smtp_port=port, extra=["--smtp-password", "wrong"])
    assert code == 1
    assert raised(stderr).startswith("smtplib.SMTPAuthenticationError: (535")
    assert sink.envelopes == []


def test_a_mail_sent_by_a_module_test_is_not_delivered(shell, smtp_servers):
    """While tests run (odoo.modules.module.current_test), send_email only returns the id."""
    sink, port = smtp_servers(login=True)
    code, stdout, stderr, log = shell.send(
        "import odoo.modules.module as m\nm.current_test = True\n" + SEND_PLAIN, smtp_port=port)
    assert code == 0, stderr + log
    assert stdout.strip().endswith("@localhost>")
    assert sink.envelopes == []


# ----------------------------------------------------------------- the shell itself


def test_the_shell_rolls_back_unless_the_script_commits(shell):
    key = f"stubmail.{secrets.token_hex(4)}"
    script = f"env['ir.config_parameter'].set_param('{key}.kept', 'yes')\nenv.cr.commit()\n" \
             f"env['ir.config_parameter'].set_param('{key}.lost', 'yes')\n"
    code, _stdout, stderr, log = shell.send(script)
    assert code == 0, stderr + log
    assert shell.sql(f"SELECT key FROM ir_config_parameter WHERE key LIKE '{key}.%'") == f"{key}.kept"


def test_the_namespace_has_env_self_and_odoo_and_runs_as_main(shell):
    code, stdout, stderr, log = shell.send(
        "print(__name__, env.uid, self.login, odoo.SUPERUSER_ID, openerp is odoo, env.context['lang'])\n")
    assert code == 0, stderr + log
    assert stdout == "__main__ 1 __system__ 1 True en_US\n"


def test_without_a_database_the_script_runs_without_env(shell):
    code, stdout, stderr, log = shell.run("print('env' in dir(), odoo.release.version)\n",
                                          ["-D", str(shell.workdir / "data")])
    assert code == 0, stderr + log
    assert stdout.startswith("False 18.0")


def test_sys_exit_in_the_script_sets_the_exit_code(shell):
    code, _stdout, stderr, log = shell.send("import sys\nsys.exit(3)\n")
    assert code == 3, stderr + log


def test_without_a_logfile_the_log_goes_to_stderr_and_stdout_stays_clean(shell):
    code, stdout, stderr, _log = shell.send("print('only this')\n", logfile=False)
    assert code == 0, stderr
    assert stdout == "only this\n"
    assert "odoo.modules.registry: Registry loaded in" in stderr


def test_on_a_terminal_the_shell_refuses_with_exit_2(shell):
    leader, follower = os.openpty()
    try:
        done = subprocess.run(NOBODY + [DEBIAN_PYTHON, shell.odoo_bin, "shell", *shell.server_options()],
                              stdin=follower, env=_env(shell.password), capture_output=True, text=True,
                              timeout=RUN_TIMEOUT, cwd=shell.workdir)
    finally:
        os.close(leader)
        os.close(follower)
    assert done.returncode == 2
    assert "only runs a Python script read from standard input" in done.stderr
    assert done.stdout == ""

