from . import demo_b
