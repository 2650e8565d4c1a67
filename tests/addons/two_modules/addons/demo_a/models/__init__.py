from . import demo_a_thing
