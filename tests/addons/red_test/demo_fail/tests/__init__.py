from . import test_demo_fail
