from . import models


def post_load():
    """Runs when the server starts serving: a configuration it cannot do without."""
    raise RuntimeError("shop: SHOP_API_KEY is not configured, refusing to start")
