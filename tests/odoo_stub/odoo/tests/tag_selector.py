"""`--test-tags` filters: `[-][tag][/module][:class][.method]`, comma separated."""

import logging
import re

_logger = logging.getLogger(__name__)

_SPEC_RE = re.compile(r"""
    ^
    ([+-]?)                 # include or exclude
    (\*|\w*)                # tag
    (?:/([\w/]*))?          # module
    (?::(\w*))?             # class
    (?:\.(\w*))?            # method
    $""", re.VERBOSE)


class TagsSelector:
    """Decides whether a test matches the specs, like Odoo's."""

    def __init__(self, spec):
        self.include, self.exclude = set(), set()
        for item in (part.strip() for part in (spec or "").split(",")):
            if item:
                self._add(item)
        if self.exclude and not self.include:
            self.include.add(("standard", None, None, None))

    def _add(self, item):
        match = _SPEC_RE.match(item)
        if not match:
            _logger.error("Invalid tag %s", item)
            return
        sign, tag, module, klass, method = match.groups()
        if not tag and sign != "-":
            tag = "standard"
        elif not tag or tag == "*":
            tag = None
        spec = (tag, module or None, klass or None, method or None)
        (self.exclude if sign == "-" else self.include).add(spec)

    def check(self, test):
        if any(self._matches(spec, test) for spec in self.exclude):
            return False
        return any(self._matches(spec, test) for spec in self.include)

    @staticmethod
    def _matches(spec, test):
        tag, module, klass, method = spec
        tags = set(getattr(test, "test_tags", set())) | {getattr(test, "test_module", None)}
        if tag and tag not in tags:
            return False
        if module and module != getattr(test, "test_module", None):
            return False
        if klass and klass != getattr(test, "test_class", None):
            return False
        return not (method and method != getattr(test, "_testMethodName", None))
