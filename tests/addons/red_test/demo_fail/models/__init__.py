from . import demo_fail_thing
