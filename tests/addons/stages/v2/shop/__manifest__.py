{
    "name": "Shop",
    "version": "18.0.1.0.1",
    "summary": "Orders, with an outgoing mail server and a reminder job",
    "depends": ["base"],
    "data": [
        "security/ir.model.access.csv",
        "data/shop_data.xml",
    ],
    "license": "LGPL-3",
    "installable": True,
}
