from . import models


def post_init(env):
    """First installation: the database's identity parameters."""
    env["ir.config_parameter"].init_database_parameters()
