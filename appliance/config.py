"""One typed configuration object, loaded from TOML with environment overrides.

The file is /etc/appliance/appliance.toml unless `--config` or APPLIANCE_CONFIG says
otherwise. Any key can be overridden by APPLIANCE_<SECTION>_<KEY> (upper case), and a
secret key NAME may instead be read from the file named by NAME_file in the TOML or by
APPLIANCE_<SECTION>_<NAME>_FILE in the environment.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from appliance.errors import ConfigError

DEFAULT_PATH = Path("/etc/appliance/appliance.toml")
# No configuration may allow passwords shorter than this.
LOWEST_PASSWORD_LENGTH = 8

# Debian 12 packages that run Odoo 16-18 from a source tree (measured on 18.0).
ODOO_DEBIAN_PACKAGES = [
    "ca-certificates", "curl", "postgresql-client", "python3", "python3-pip",
    "python3-babel", "python3-chardet", "python3-cryptography", "python3-dateutil",
    "python3-decorator", "python3-docutils", "python3-freezegun", "python3-geoip2",
    "python3-gevent", "python3-greenlet", "python3-idna", "python3-jinja2",
    "python3-libsass", "python3-lxml", "python3-markupsafe", "python3-num2words",
    "python3-ofxparse", "python3-openpyxl", "python3-openssl", "python3-passlib",
    "python3-pil", "python3-polib", "python3-psutil", "python3-psycopg2",
    "python3-pypdf2", "python3-qrcode", "python3-reportlab", "python3-renderpm",
    "python3-requests", "python3-rjsmin", "python3-serial", "python3-stdnum",
    "python3-tz", "python3-urllib3", "python3-usb", "python3-vobject",
    "python3-werkzeug", "python3-xlrd", "python3-xlsxwriter", "python3-xlwt",
    "python3-zeep", "python3-ldap", "python3-asn1crypto", "python3-cbor2",
    "python3-typing-extensions", "python3-html2text", "python3-pkg-resources",
]

DEFAULT_WARNING_IGNORE = [
    r"py\.warnings: .*DeprecationWarning",
    r"odoo\.addons\.base\.models\.ir_actions_report: You need Wkhtmltopdf",
    r"odoo\.tests\.result: 0 failed, 0 error\(s\) of 0 tests",
]


@dataclass
class ServerConfig:
    listen: str = "127.0.0.1:8080"
    public_url: str = "http://127.0.0.1:8080"
    threads: int = 16
    secret_key: str = ""
    offline_demo: bool = False


@dataclass
class PathsConfig:
    data_dir: Path = Path("/var/lib/appliance")

    @property
    def repos(self) -> Path:
        return self.data_dir / "repos"

    @property
    def builds(self) -> Path:
        return self.data_dir / "builds"

    @property
    def odoo(self) -> Path:
        return self.data_dir / "odoo"

    @property
    def hooks(self) -> Path:
        return self.data_dir / "hooks"


@dataclass
class DatabaseConfig:
    dsn: str = "host=127.0.0.1 dbname=appliance user=appliance"
    password: str = ""
    admin_dsn: str = ""
    socket_dir: str = "/var/run/postgresql"
    projects_group: str = "appliance_projects"
    role_prefix: str = "appl_"
    db_prefix: str = "appl_"


@dataclass
class WorkersConfig:
    builds: int = 2
    max_running_servers: int = 8
    poll_seconds: float = 1.0
    stop_grace_seconds: float = 30.0


@dataclass
class RuntimeConfig:
    base_image: str = "appliance/debian:bookworm"
    debian_suite: str = "bookworm"
    debian_mirror: str = "http://deb.debian.org/debian"
    debian_packages: list[str] = field(default_factory=lambda: list(ODOO_DEBIAN_PACKAGES))
    ca_bundle: str = ""
    uid: int = 990
    memory: str = "2g"
    cpus: float = 1.0
    pids_limit: int = 512
    publish_interface: str = "127.0.0.1"
    public_host: str = "127.0.0.1"
    network_prefix: str = "appliance"
    network_pool: str = "10.213.0.0/16"
    bytecode_dir: str = ""


@dataclass
class OdooVersion:
    source: str = "https://github.com/odoo/odoo.git"
    ref: str = "18.0"


@dataclass
class OdooConfig:
    default_version: str = "18.0"
    versions: dict[str, OdooVersion] = field(
        default_factory=lambda: {"18.0": OdooVersion()})


@dataclass
class BuildsConfig:
    warning_ignore: list[str] = field(default_factory=lambda: list(DEFAULT_WARNING_IGNORE))
    install_timeout: int = 3600
    health_timeout: int = 120
    dev_keep_days: float = 3.0
    gc_interval_minutes: int = 60
    sleep_minutes: float = 60.0


@dataclass
class MailConfig:
    listen_host: str = ""
    port: int = 2525
    max_message_bytes: int = 25 * 1024 * 1024
    max_recipients: int = 100
    prune_interval_minutes: int = 60


@dataclass
class GitConfig:
    max_push_bytes: int = 200 * 1024 * 1024
    repository_quota: int = 4 * 1024 * 1024 * 1024


@dataclass
class SshConfig:
    user: str = "appliance"
    host: str = ""
    port: int = 22


@dataclass
class BackupConfig:
    daily: bool = True
    daily_first_hour: int = 1
    daily_hours: int = 4
    jitter_seconds: int = 600
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 3
    keep_other_days: int = 14
    lock_wait_minutes: float = 180.0
    verify: bool = True
    verify_hour: int = 5
    check_weekday: str = "sun"
    check_hour: int = 6
    check_read_data_subset: str = "5%"
    copy_retry_minutes: int = 30
    upload_max_bytes: int = 20 * 1024 * 1024 * 1024
    upload_chunk_bytes: int = 8 * 1024 * 1024
    upload_expiry_hours: float = 24.0


@dataclass
class AccountsConfig:
    password_min_length: int = 12
    require_totp_for_admins: bool = False
    token_default_days: int = 90


@dataclass
class AuditConfig:
    retention_days: int = 365


@dataclass
class ProxyConfig:
    base_domain: str = ""
    admin: str = "127.0.0.1:2019"
    https_port: int = 443
    http_port: int = 80
    tls: str = "internal"
    certificate_path: str = ""
    key_path: str = ""
    acme_email: str = ""
    check_seconds: float = 10.0
    retry_after_seconds: int = 30


@dataclass
class EditorConfig:
    max_file_bytes: int = 1024 * 1024


@dataclass
class ShellConfig:
    listen: str = "127.0.0.1:0"
    idle_minutes: float = 30.0
    cast_dir: str = ""
    cast_keep_days: int = 90


@dataclass
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    odoo: OdooConfig = field(default_factory=OdooConfig)
    builds: BuildsConfig = field(default_factory=BuildsConfig)
    mail: MailConfig = field(default_factory=MailConfig)
    git: GitConfig = field(default_factory=GitConfig)
    ssh: SshConfig = field(default_factory=SshConfig)
    backup: BackupConfig = field(default_factory=BackupConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    shell: ShellConfig = field(default_factory=ShellConfig)
    editor: EditorConfig = field(default_factory=EditorConfig)
    accounts: AccountsConfig = field(default_factory=AccountsConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    source: Path | None = None

    def odoo_version(self, version: str) -> OdooVersion:
        try:
            return self.odoo.versions[version]
        except KeyError:
            raise ConfigError(f"Odoo version {version!r} is not configured "
                              f"(known: {', '.join(sorted(self.odoo.versions))})") from None


SECTIONS = {
    "server": ServerConfig, "paths": PathsConfig, "database": DatabaseConfig,
    "workers": WorkersConfig, "runtime": RuntimeConfig, "builds": BuildsConfig,
    "mail": MailConfig, "git": GitConfig, "ssh": SshConfig, "backup": BackupConfig,
    "proxy": ProxyConfig, "accounts": AccountsConfig, "audit": AuditConfig,
    "shell": ShellConfig,
    "editor": EditorConfig,
}


def _coerce(section: str, key: str, value, target_type):
    name = f"[{section}] {key}"
    target = str(target_type)
    try:
        if target in ("int", "<class 'int'>"):
            return int(value)
        if target in ("float", "<class 'float'>"):
            return float(value)
        if target in ("bool", "<class 'bool'>"):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if target in ("Path", "<class 'pathlib.Path'>"):
            return Path(value)
        if target.startswith("list"):
            if isinstance(value, str):
                return [item.strip() for item in value.split(",") if item.strip()]
            if not isinstance(value, list):
                raise TypeError("expected a list")
            return [str(item) for item in value]
        if not isinstance(value, str):
            raise TypeError("expected a string")
        return value
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _build_section(section: str, cls, raw: dict, env: dict[str, str]):
    known = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if key.endswith("_file") and key[:-5] in known:
            values[key[:-5]] = _read_secret(Path(value), f"[{section}] {key}")
            continue
        if key not in known:
            raise ConfigError(f"unknown key [{section}] {key}")
        values[key] = _coerce(section, key, value, known[key].type)
    for key, fld in known.items():
        env_name = f"APPLIANCE_{section}_{key}".upper()
        if env_name in env:
            values[key] = _coerce(section, key, env[env_name], fld.type)
        elif env_name + "_FILE" in env:
            values[key] = _read_secret(Path(env[env_name + "_FILE"]), env_name + "_FILE")
    return cls(**values)


def _read_secret(path: Path, name: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from None


def _build_odoo(raw: dict, env: dict[str, str]) -> OdooConfig:
    versions = {}
    for name, spec in (raw.get("versions") or {}).items():
        if not isinstance(spec, dict):
            raise ConfigError(f"[odoo.versions.{name}] must be a table")
        unknown = set(spec) - {"source", "ref"}
        if unknown:
            raise ConfigError(f"unknown key [odoo.versions.{name}] {sorted(unknown)[0]}")
        versions[name] = OdooVersion(**spec)
    unknown = set(raw) - {"default_version", "versions"}
    if unknown:
        raise ConfigError(f"unknown key [odoo] {sorted(unknown)[0]}")
    config = OdooConfig(default_version=raw.get("default_version", "18.0"),
                        versions=versions or {"18.0": OdooVersion()})
    # APPLIANCE_ODOO_SOURCE / _REF point the default version elsewhere (a local tree).
    default = config.versions.setdefault(config.default_version, OdooVersion())
    if env.get("APPLIANCE_ODOO_SOURCE"):
        default.source = env["APPLIANCE_ODOO_SOURCE"]
    if env.get("APPLIANCE_ODOO_REF"):
        default.ref = env["APPLIANCE_ODOO_REF"]
    return config


def load(path: Path | str | None = None, env: dict[str, str] | None = None) -> Config:
    """Read the config file (if it exists) and apply environment overrides."""
    env = dict(os.environ if env is None else env)
    if path is None:
        path = Path(env.get("APPLIANCE_CONFIG", DEFAULT_PATH))
    path = Path(path)
    raw: dict = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    unknown = set(raw) - set(SECTIONS) - {"odoo"}
    if unknown:
        raise ConfigError(f"{path}: unknown section [{sorted(unknown)[0]}]")
    sections = {name: _build_section(name, cls, raw.get(name, {}), env)
                for name, cls in SECTIONS.items()}
    config = Config(odoo=_build_odoo(raw.get("odoo", {}), env), source=path, **sections)
    _check_exposure(config)
    _check_accounts(config.accounts)
    if config.audit.retention_days < 1:
        raise ConfigError(f"[audit] retention_days = {config.audit.retention_days}: at "
                          "least 1 (the audit trail keeps that many days)")
    return config


TLS_MODES = ("internal", "files", "acme")


def _check_exposure(config: Config) -> None:
    """Builds' plain-HTTP ports are published on the loopback interface only: the proxy
    (or, without one, a browser on the server itself) is the way in."""
    interface = config.runtime.publish_interface
    if interface not in ("127.0.0.1", "::1", "localhost"):
        raise ConfigError(f"[runtime] publish_interface = {interface!r}: builds' ports are "
                          "published on the loopback interface only (127.0.0.1); to reach "
                          "builds from other machines, set [proxy] base_domain")
    proxy = config.proxy
    if proxy.base_domain and config.server.public_url == ServerConfig.public_url:
        port = "" if proxy.https_port == 443 else f":{proxy.https_port}"
        config.server.public_url = f"https://{proxy.base_domain}{port}"
    if proxy.tls not in TLS_MODES:
        raise ConfigError(f"[proxy] tls = {proxy.tls!r}: one of {', '.join(TLS_MODES)}")
    if proxy.base_domain and proxy.tls == "files" and not (proxy.certificate_path
                                                             and proxy.key_path):
        raise ConfigError("[proxy] tls = \"files\" needs certificate_path and key_path "
                          "(a wildcard certificate of the base domain and its key)")
    host, _, port = config.shell.listen.rpartition(":")
    if host not in ("127.0.0.1", "[::1]", "localhost") or not port.isdigit():
        raise ConfigError(f"[shell] listen = {config.shell.listen!r}: a loopback address "
                          "and port (127.0.0.1:PORT); the proxy, or the browser on this "
                          "machine, reaches the shell there")


def _check_accounts(accounts: AccountsConfig) -> None:
    if accounts.password_min_length < LOWEST_PASSWORD_LENGTH:
        raise ConfigError(f"[accounts] password_min_length = {accounts.password_min_length}: "
                          f"at least {LOWEST_PASSWORD_LENGTH}")
    if accounts.token_default_days < 0:
        raise ConfigError("[accounts] token_default_days: a number of days, 0 for never")
