"""Version of the stand-in, shaped like Odoo's release module."""

version_info = (18, 0, 0, "final", 0, "")
series = serie = major_version = "18.0"
version = "18.0-stub"
product_name = "Odoo"
description = "Odoo Server (stand-in)"
