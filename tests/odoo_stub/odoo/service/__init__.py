"""The server: HTTP service, database preloading, signals."""
