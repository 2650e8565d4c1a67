from . import test_demo_ok
