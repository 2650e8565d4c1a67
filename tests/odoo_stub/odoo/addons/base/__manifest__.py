{
    "name": "Base",
    "version": "1.3",
    "category": "Hidden",
    "summary": "The kernel of the stand-in: modules, models, users, parameters, attachments",
    "depends": [],
    "data": [
        "data/base_data.xml",
        "security/ir.model.access.csv",
    ],
    "demo": [
        "demo/base_demo.xml",
    ],
    "post_init_hook": "post_init",
    "installable": True,
}
