"""The audit trail's retention: rows older than [audit] retention_days go, once a day."""

from __future__ import annotations

import logging

from appliance.store import audit as audit_store

log = logging.getLogger(__name__)


def prune(svc) -> int:
    """Delete the rows past the retention; how many went. Safe to run at any time."""
    days = svc.config.audit.retention_days
    with svc.db.transaction() as conn:
        removed = audit_store.prune(conn, days)
    if removed:
        log.info("audit trail: %d row(s) older than %d days removed", removed, days)
    return removed
