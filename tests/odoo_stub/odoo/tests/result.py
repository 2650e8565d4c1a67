"""unittest results logged the way Odoo logs them.

`Starting Class.test_x ...` at INFO before each test; for a failure or an error a
line of '=' at INFO, then `FAIL: Class.test_x` / `ERROR: Class.test_x` at ERROR
with the traceback on the following lines, under the test module's logger.
"""

import logging
import unittest


class OdooTestResult(unittest.TestResult):

    def startTest(self, test):
        super().startTest(test)
        _logger_of(test).info("Starting %s ...", describe(test))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._log_error("FAIL", test, err)

    def addError(self, test, err):
        super().addError(test, err)
        self._log_error("ERROR", test, err)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            flavour = "FAIL" if issubclass(err[0], test.failureException) else "ERROR"
            self._log_error(flavour, subtest, err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        _logger_of(test).info("skipped %s: %s", describe(test), reason)

    def _log_error(self, flavour, test, err):
        logger = _logger_of(test)
        logger.info("=" * 70)
        logger.error("%s: %s\n%s", flavour, describe(test), self._exc_info_to_string(err, test))


def describe(test):
    """`Class.test_method` (or unittest's description for class set-up errors)."""
    if isinstance(test, unittest.case._SubTest):
        return f"{describe(test.test_case)} {test._subDescription()}"
    if hasattr(test, "_testMethodName"):
        return f"{type(test).__name__}.{test._testMethodName}"
    return str(test)


def _logger_of(test):
    owner = getattr(test, "test_case", test)
    module = type(owner).__module__ if hasattr(owner, "_testMethodName") else "odoo.tests.suite"
    return logging.getLogger(module)
