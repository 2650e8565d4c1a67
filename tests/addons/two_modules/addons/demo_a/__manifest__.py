{
    "name": "Demo A",
    "version": "18.0.1.0.0",
    "summary": "The module demo_b depends on",
    "depends": ["base"],
    "data": ["security/ir.model.access.csv"],
    "license": "LGPL-3",
}
