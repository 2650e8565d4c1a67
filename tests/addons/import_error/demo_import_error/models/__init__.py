raise RuntimeError("deliberate error while importing demo_import_error.models")
