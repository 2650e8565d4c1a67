"""Namespace of the addons.

As in Odoo, `__path__` is extended with every addons path at start-up
(`odoo.modules.module.initialize_sys_path`), so `import odoo.addons.<name>`
finds a module in any of them.
"""
