from . import test_demo_six
