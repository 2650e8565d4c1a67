from . import test_demo_a
