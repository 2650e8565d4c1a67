from . import test_demo_b
