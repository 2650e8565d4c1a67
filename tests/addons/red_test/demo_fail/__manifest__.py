{
    "name": "Demo Fail",
    "version": "18.0.1.0.0",
    "summary": "Tests that fail on purpose",
    "depends": ["base"],
    "license": "LGPL-3",
}
