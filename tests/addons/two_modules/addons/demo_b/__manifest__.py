{
    "name": "Demo B",
    "version": "18.0.1.0.0",
    "summary": "Extends demo_a",
    "depends": ["demo_a"],
    "data": ["security/ir.model.access.csv"],
    "license": "LGPL-3",
}
