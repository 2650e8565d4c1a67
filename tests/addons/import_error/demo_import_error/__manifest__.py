{
    "name": "Demo Import Error",
    "version": "18.0.1.0.0",
    "summary": "Python code that fails at import",
    "depends": ["base"],
    "license": "LGPL-3",
}
