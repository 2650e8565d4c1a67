{
    "name": "Demo OK",
    "version": "18.0.1.0.0",
    "summary": "A small addon that installs and tests cleanly",
    "depends": ["base"],
    "data": [
        "security/ir.model.access.csv",
        "views/demo_ok_views.xml",
    ],
    "demo": [
        "demo/demo_ok_demo.xml",
    ],
    "license": "LGPL-3",
    "installable": True,
}
