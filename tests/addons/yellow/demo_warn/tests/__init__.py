from . import test_demo_warn
