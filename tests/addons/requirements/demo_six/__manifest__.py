{
    "name": "Demo Six",
    "version": "18.0.1.0.0",
    "summary": "Needs the six package",
    "depends": ["base"],
    "external_dependencies": {"python": ["six"]},
    "data": ["security/ir.model.access.csv"],
    "license": "LGPL-3",
}
