"""The exceptions addons raise, named and placed like Odoo's."""


class UserError(Exception):
    """An error a user can fix; shown as is."""

    def __init__(self, message):
        super().__init__(message)


class ValidationError(UserError):
    """Data does not satisfy a constraint."""


class AccessError(UserError):
    """The user may not do this."""


class MissingError(UserError):
    """The record does not exist (any more)."""


class RedirectWarning(Exception):
    """Kept for addons importing it; never raised here."""
