from . import demo_six_thing
