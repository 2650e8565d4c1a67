"""Not an addon: a folder without __manifest__.py."""
