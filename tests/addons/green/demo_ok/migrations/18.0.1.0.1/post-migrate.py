import logging

_logger = logging.getLogger(__name__)


def migrate(cr, version):
    cr.execute("SELECT count(*) FROM demo_ok_thing")
    _logger.info("demo_ok post-migrate from %s: %s things in table", version, cr.fetchone()[0])
