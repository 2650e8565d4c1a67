"""The deploy plan (jobs.plan.make_plan): installed versions against the branch's
manifests, as production and staging updates use it."""

import pytest

from appliance.jobs.plan import FAST_SUMMARY, FIRST_SUMMARY, BadVersion, make_plan
from appliance.runtime.odoo import Manifest


def manifest(name: str, version: str) -> Manifest:
    return Manifest(name=name, path=name, version=version, depends=["base"], installable=True,
                    data={"version": version})


def plan(installed, *modules, wanted=None):
    manifests = [manifest(name, version) for name, version in modules]
    names = wanted if wanted is not None else [m.name for m in manifests]
    return make_plan(installed, manifests, names, "18.0")


def test_no_database_yet_is_a_first_deploy_installing_every_module():
    first = plan(None, ("shop", "1.0"), ("cart", "1.2"))
    assert (first.deploy, first.install, first.update, first.summary) == \
        ("first", ("shop", "cart"), {}, FIRST_SUMMARY)


def test_a_new_module_is_installed_in_a_full_deploy():
    new = plan({"shop": "18.0.1.0"}, ("shop", "1.0"), ("cart", "1.0"))
    assert (new.deploy, new.install, new.update) == ("full", ("cart",), {})
    assert new.summary == "install cart (new)"


def test_a_bumped_version_is_updated_with_both_versions_shown():
    bumped = plan({"shop": "18.0.1.0", "cart": "18.0.1.0"}, ("shop", "1.1"), ("cart", "1.0"))
    assert (bumped.deploy, bumped.install) == ("full", ())
    assert bumped.update == {"shop": ("18.0.1.0", "18.0.1.1")}
    assert bumped.summary == "update shop 18.0.1.0 -> 18.0.1.1"
    assert bumped.as_json() == {"deploy": "full", "summary": bumped.summary,
                                "update": {"shop": ["18.0.1.0", "18.0.1.1"]}, "install": [],
                                "reasons": []}


def test_versions_compare_as_numbers_not_as_text():
    assert plan({"shop": "18.0.1.9"}, ("shop", "1.10")).update == \
        {"shop": ("18.0.1.9", "18.0.1.10")}


def test_updates_and_installs_go_in_one_full_deploy():
    both = plan({"shop": "18.0.1.0"}, ("shop", "18.0.2.0"), ("cart", "1.0"))
    assert both.summary == "update shop 18.0.1.0 -> 18.0.2.0; install cart (new)"


@pytest.mark.parametrize("in_branch", ["1.0", "18.0.1.0", "18.0.1.0.0", "1.0.0"])
def test_an_unchanged_version_is_a_fast_deploy_however_it_is_written(in_branch):
    unchanged = plan({"shop": "18.0.1.0"}, ("shop", in_branch))
    assert (unchanged.deploy, unchanged.summary, unchanged.update, unchanged.install) == \
        ("fast", FAST_SUMMARY, {}, ())


def test_a_downgraded_version_is_not_updated_and_the_plan_says_why():
    down = plan({"shop": "18.0.1.2"}, ("shop", "1.1"))
    assert (down.deploy, down.update) == ("fast", {})
    assert down.notes == ("shop: 18.0.1.2 is installed and the branch has 18.0.1.1; "
                          "a version going down is not updated",)
    assert down.as_json()["reasons"] == list(down.notes)


def test_a_module_removed_from_the_branch_is_left_installed():
    removed = plan({"shop": "18.0.1.0", "cart": "18.0.1.0", "base": "18.0.1.3"},
                   ("shop", "1.0"))
    assert (removed.deploy, removed.update, removed.install, removed.notes) == \
        ("fast", {}, (), ())


def test_only_the_build_s_modules_are_planned():
    listed = plan({"shop": "18.0.1.0"}, ("shop", "1.1"), ("draft", "1.0"), wanted=["shop"])
    assert (listed.update, listed.install) == ({"shop": ("18.0.1.0", "18.0.1.1")}, ())


@pytest.mark.parametrize("bad", ["1.0-beta", "one", "", "1..0", "18.0.1.x"])
def test_a_bad_manifest_version_is_refused_naming_the_module(bad):
    with pytest.raises(BadVersion, match=rf"module shop: version '{bad}' in its "
                                         r"__manifest__.py is not numbers separated by dots"):
        plan({"shop": "18.0.1.0"}, ("cart", "1.0"), ("shop", bad))


def test_an_installed_version_that_cannot_be_read_is_updated():
    unreadable = plan({"shop": ""}, ("shop", "1.0"))
    assert (unreadable.deploy, unreadable.update) == ("full", {"shop": ("", "18.0.1.0")})
