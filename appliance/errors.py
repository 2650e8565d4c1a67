"""The project's own errors: a user's mistake is told apart from a system failure."""


class ApplianceError(Exception):
    """Base of every error the appliance raises on purpose."""


class UserError(ApplianceError):
    """Bad input from a person or a client: shown to them as it is, changes nothing."""


class NotFound(UserError):
    """The named thing does not exist (or the caller may not know it does)."""


class PermissionDenied(UserError):
    """The caller is known but may not do this."""


class ConfigError(ApplianceError):
    """The configuration is wrong: the operator must fix a file or a variable."""


class SystemFailure(ApplianceError):
    """An outside system (Docker, PostgreSQL, git) failed: not the user's fault."""


class DockerError(SystemFailure):
    """The Docker engine refused or failed."""


class BackupError(SystemFailure):
    """restic, pg_dump or the backup repository failed; the message is theirs."""


class ImageBuildError(SystemFailure):
    """A runtime image could not be built; the log says why."""


class ManifestError(UserError):
    """An addon's __manifest__.py cannot be read as a Python dict."""


class GitError(UserError):
    """A git operation on a project's repository was refused."""


class UnsafeTree(UserError):
    """A pushed tree cannot be checked out safely (a symlink leading out of it)."""
