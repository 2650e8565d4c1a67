"""Reading Odoo logs: records, and the colour of a build, on logs of real Odoo 18."""

from pathlib import Path

import pytest

from appliance.runtime.odoo import classify, iter_records, parse_log

SAMPLES = Path(__file__).parent / "samples"
DEPRECATION_IGNORED = [r"py\.warnings: .*DeprecationWarning"]


def sample(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8")


def access_rules_warning_log() -> str:
    """test_demo_ok.log with the access-rules WARNING record of test_demo_fail.log
    inserted where Odoo logs it: both are real lines, the mix is a yellow build."""
    warning = next(r.text for r in parse_log(sample("test_demo_fail.log"))
                   if "have no access rules" in r.message)
    lines = sample("test_demo_ok.log").splitlines()
    at = next(i for i, line in enumerate(lines) if "creating or updating database tables" in line)
    return "\n".join(lines[: at + 1] + [warning] + lines[at + 1:]) + "\n"


# ----------------------------------------------------------------- parse_log


def test_a_record_is_a_prefixed_line_with_its_unprefixed_continuation_lines():
    records = parse_log(sample("test_demo_fail.log"))
    fail = next(r for r in records if r.message.startswith("FAIL: TestDemoFailAtInstall"))
    assert fail.level == "ERROR"
    assert fail.db == "tfail"
    assert fail.pid == "1"
    assert fail.logger == "odoo.addons.demo_fail.tests.test_demo_fail"
    assert fail.time == "2026-11-22 13:57:27,493"
    assert "AssertionError: 'a' != 'b'" in fail.text
    assert fail.message.splitlines()[0] == "FAIL: TestDemoFailAtInstall.test_assertion_fails"


def test_the_trailing_space_of_odoo_lines_is_not_part_of_the_message():
    first = parse_log(sample("test_demo_ok.log"))[0]
    assert first.message == "Odoo version 18.0+e-20241005"
    assert first.text.endswith(" ")


def test_a_question_mark_database_is_no_database():
    first = parse_log(sample("test_demo_ok.log"))[0]
    assert first.db is None
    assert first.line_no == 1


def test_the_reportlab_line_is_a_raw_record_of_its_own():
    records = parse_log(sample("test_demo_ok.log"))
    raw = [r for r in records if r.level == "RAW"]
    assert [r.text for r in raw] == ["Warn: Can't find .pfb for face 'Courier'"]
    database_line = next(r for r in records if r.message.startswith("database:"))
    assert "\n" not in database_line.text


def test_raw_lines_before_the_first_record_have_level_raw():
    records = parse_log("something printed first\n2026-11-22 13:57:25,759 1 INFO ? odoo: hello \n")
    assert [(r.level, r.line_no) for r in records] == [("RAW", 1), ("INFO", 2)]
    assert records[0].logger is None and records[0].time is None


def test_the_access_rules_warning_keeps_its_csv_lines():
    warning = next(r for r in parse_log(sample("test_demo_fail.log")) if r.level == "WARNING")
    assert warning.text.splitlines()[1].startswith("id,name,model_id:id")
    assert "demo_fail.model_demo_fail_thing" in warning.message


def test_streaming_keeps_a_traceback_in_one_record():
    lines = iter(sample("install_missing_dep.log").splitlines(keepends=True))
    records = list(iter_records(lines))
    critical = next(r for r in records if r.level == "CRITICAL")
    assert critical.text.count("\n") > 20
    assert critical.text.rstrip().endswith("not available in your system.")
    assert records == parse_log(sample("install_missing_dep.log"))


def test_werkzeug_request_lines_are_records():
    line = ('2026-11-22 13:58:53,310 7 INFO t2 werkzeug: 127.0.0.1 - - [22/Nov/2026 13:58:53] '
            '"GET /web/health HTTP/1.1" 200 - 5 0.004 0.235')
    (record,) = parse_log(line)
    assert record.logger == "werkzeug"
    assert record.message.startswith("127.0.0.1 - - [22/Nov/2026")


# ----------------------------------------------------------------- classify


def test_passing_tests_make_the_build_green():
    found = classify(sample("test_demo_ok.log"), 0, [])
    assert (found.result, found.reason) == ("success", "")
    assert found.tests_run == 1
    assert found.failed_tests == [] and found.errors == [] and found.warnings == []


def test_failed_tests_make_the_build_red():
    found = classify(sample("test_demo_fail.log"), 1, [])
    assert found.result == "failure"
    assert found.reason == "2 failed, 1 error(s) of 4 tests"
    assert found.tests_run == 4
    assert [(t.module, t.name, t.kind) for t in found.failed_tests] == [
        ("demo_fail", "TestDemoFailAtInstall.test_assertion_fails", "FAIL"),
        ("demo_fail", "TestDemoFailAtInstall.test_raises_error", "ERROR"),
        ("demo_fail", "TestDemoFailPostInstall.test_post_install_fails", "FAIL"),
    ]
    assert "ValueError: deliberate error raised by demo_fail" in found.failed_tests[1].traceback


def test_failed_tests_are_red_even_if_the_exit_code_says_otherwise():
    assert classify(sample("test_demo_fail.log"), 0, []).result == "failure"


def test_a_missing_dependency_fails_with_odoos_explanation():
    found = classify(sample("install_missing_dep.log"), 255, [])
    assert found.result == "failure"
    assert found.reason.startswith("Failed to initialize database `tok`")
    assert 'depends on module "no_such_dependency"' in found.reason
    assert "odoo.service.server: Failed to initialize database `tok`." in found.errors


def test_an_unknown_module_fails_the_build_although_odoo_exits_0():
    found = classify(sample("install_unknown_module.log"), 0, [])
    assert found.result == "failure"
    assert found.unknown_modules == ["does_not_exist"]
    assert found.reason == "unknown module(s): does_not_exist"


def test_missing_access_rules_make_the_build_yellow():
    found = classify(access_rules_warning_log(), 0, [])
    assert (found.result, found.reason) == ("warning", "1 warning")
    assert "have no access rules in module demo_fail" in found.warnings[0]


def test_a_warning_matching_an_ignore_pattern_does_not_count():
    found = classify(access_rules_warning_log(), 0, [r"have no access rules"])
    assert found.result == "success"


def test_ignored_python_deprecation_warnings_keep_the_build_green():
    found = classify(sample("install_base.log"), 0, DEPRECATION_IGNORED)
    assert found.result == "success"


def test_python_deprecation_warnings_make_the_build_yellow_unless_ignored():
    found = classify(sample("install_base.log"), 0, [])
    assert found.result == "warning"
    assert found.reason == "3 warnings"
    assert all(w.startswith("py.warnings: ") for w in found.warnings)


def test_zero_tests_run_make_the_build_yellow():
    found = classify(sample("test_tags_zero_tests.log"), 0, [])
    assert found.result == "warning"
    assert found.tests_run == 0


def test_a_syntax_error_is_named_in_the_reason():
    found = classify(sample("update_demo_ok_syntaxerror.log"), 255, [])
    assert found.result == "failure"
    assert found.reason == "Failed to initialize database `tok`: SyntaxError: '(' was never closed"


def test_a_bad_view_is_a_parse_error():
    found = classify(sample("update_demo_ok_broken.log"), 255, [])
    assert "ParseError: while parsing /mnt/extra-addons/demo_ok/views/demo_ok_views.xml:3" in found.reason


@pytest.mark.parametrize("exit_code", [1, 255])
def test_a_non_zero_exit_code_alone_fails_the_build(exit_code):
    found = classify(sample("http_db_unreachable.log"), exit_code, [])
    assert found.result == "failure"
    assert found.errors == []
    assert found.reason.startswith(f"exit code {exit_code}: OperationalError: connection to server")


def test_an_empty_log_with_exit_code_0_is_green():
    assert classify("", 0, []).result == "success"


def test_a_crash_before_logging_starts_gives_its_exception_as_the_reason():
    text = ("Traceback (most recent call last):\n"
            '  File "/opt/odoo/odoo-bin", line 5, in <module>\n'
            "    import odoo\n"
            "ModuleNotFoundError: No module named 'snap7'\n")
    verdict = classify(text, 1, [])
    assert verdict.result == "failure"
    assert verdict.reason == "exit code 1: ModuleNotFoundError: No module named 'snap7'"
