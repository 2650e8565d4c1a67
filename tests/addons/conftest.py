"""The sample repositories hold Odoo addons (and their Odoo tests), not pytest tests."""

collect_ignore_glob = ["*"]
