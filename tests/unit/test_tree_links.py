"""Where a checkout's symlinks lead, worked out on the tree alone (no files written)."""

import pytest

from appliance.errors import UnsafeTree, UserError
from appliance.runtime.checkout import check_links, resolve_link


def test_a_relative_link_inside_the_tree_resolves_to_its_target():
    assert resolve_link("a/l", {"a/l": "../b/c"}) == "b/c"
    assert resolve_link("a/b/l", {"a/b/l": "../../a/../c"}) == "c"


def test_a_link_to_the_root_or_to_a_missing_path_inside_is_accepted():
    assert resolve_link("here", {"here": "."}) == ""
    assert resolve_link("d", {"d": "missing/file"}) == "missing/file"


def test_an_absolute_link_is_refused_naming_the_link_and_its_target():
    with pytest.raises(UnsafeTree, match=r"'evil' -> '/etc/passwd'"):
        resolve_link("evil", {"evil": "/etc/passwd"})


def test_a_link_climbing_out_of_the_tree_is_refused():
    with pytest.raises(UnsafeTree, match=r"'sub/l' -> '\.\./\.\./x'"):
        resolve_link("sub/l", {"sub/l": "../../x"})


def test_a_chain_through_another_link_is_followed_as_the_kernel_would():
    # lexically d/../z/.. is the root; but d is the root itself, so d/.. is its parent
    with pytest.raises(UnsafeTree, match=r"'a' -> 'd/\.\./z/\.\.'"):
        resolve_link("a", {"a": "d/../z/..", "d": "."})
    assert resolve_link("a", {"a": "d/..", "d": "x/y"}) == "x"


def test_a_link_to_a_link_that_leads_out_is_refused_naming_the_chain():
    links = {"a": "b", "b": "c/..", "c": "."}
    with pytest.raises(UnsafeTree) as caught:
        resolve_link("a", links)
    assert "'a' -> 'b'" in str(caught.value) and "'b' -> 'c/..'" in str(caught.value)


def test_dot_dot_after_a_linked_folder_climbs_from_the_real_folder():
    # up is sub/deep, so up/.. is sub (lexically it would be the root)
    assert resolve_link("l", {"up": "sub/deep", "l": "up/../x"}) == "sub/x"


def test_a_loop_of_links_is_refused():
    with pytest.raises(UnsafeTree, match="loop"):
        resolve_link("a", {"a": "b", "b": "a"})


def test_an_empty_target_is_refused():
    with pytest.raises(UnsafeTree):
        resolve_link("e", {"e": ""})


def test_check_links_names_the_first_unsafe_link_in_path_order():
    links = {"ok": "x", "z": "/abs", "m": "../up"}
    with pytest.raises(UnsafeTree, match="'m'"):
        check_links(links)
    check_links({"ok": "x", "also/ok": "../ok"})


def test_an_unsafe_tree_is_the_users_mistake():
    assert issubclass(UnsafeTree, UserError)
