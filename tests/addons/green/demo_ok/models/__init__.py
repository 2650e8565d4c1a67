from . import demo_ok_thing
