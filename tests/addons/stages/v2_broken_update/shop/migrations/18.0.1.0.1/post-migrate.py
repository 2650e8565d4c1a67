import logging

_logger = logging.getLogger(__name__)


def migrate(cr, version):
    cr.execute("UPDATE shop_order SET note = 'migrated'")
    _logger.info("shop post-migrate from %s: %s orders noted", version, cr.rowcount)
