from . import demo_warn_thing
