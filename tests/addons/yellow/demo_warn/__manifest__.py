{
    "name": "Demo Warn",
    "version": "18.0.1.0.0",
    "summary": "A model without access rules",
    "depends": ["base"],
    "license": "LGPL-3",
}
