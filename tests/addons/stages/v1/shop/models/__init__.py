from . import shop_order
