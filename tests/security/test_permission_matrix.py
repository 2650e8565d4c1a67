"""The permission matrix, generated: every route of the app and every job entry point, for
each principal (anonymous, outsider, tester, developer, project admin, appliance admin) and
each stage the route can name (production, staging, development), answers what the
table below says, against a real state database.

The table is written out here, apart from appliance.policy, so that a change of the
defaults is a change of this file too. A route is reached with real ids of one project's
three branches (a build, a caught mail, a backup of each); a POST is sent without its CSRF
token, so an allowed one stops at the token check (400) and a refused one at the policy
(403, 404 or the login page): nothing happens either way. A route whose URL takes a value
this file does not know, or that declares no rule, fails the test: a new route comes with
its entry.
"""

from __future__ import annotations

import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import appliance.jobs
from appliance import layout, mime, policy
from appliance.errors import ApplianceError, NotFound, PermissionDenied
from appliance.jobs import mail as mail_jobs
from appliance.jobs import backup as backup_jobs
from appliance.jobs import containers, editor, push, restores, stages
from appliance.jobs import uploads as upload_jobs
from appliance.runtime import git
from appliance.services import Services
from appliance.store import backups as backups_store
from appliance.store import builds as store_builds
from appliance.store import mails as store_mails
from appliance.store import projects as store_projects
from appliance.shell import cast
from appliance.store import shell as shell_store
from appliance.store import uploads as uploads_store
from appliance.store import users as store_users
from appliance.web import build_access, guard
from appliance.jobs.proxy_config import ACCESS_COOKIE
from tests.client_cookies import set_cookie
from tests.helpers_web import PASSWORD, csrf, login

ROLES_ALLOWED = {  # action: {stage: roles besides admins}; appliance admins may all
    "view":            {"production": "tester developer", "staging": "tester developer",
                        "development": "tester developer"},
    "open":            {"production": "", "staging": "tester", "development": "tester developer"},
    "logs":            {"production": "", "staging": "tester", "development": "tester developer"},
    "mails":           {"production": "", "staging": "tester", "development": "tester developer"},
    "shell":           {"production": "", "staging": "tester", "development": "tester developer"},
    "editor":          {"production": "", "staging": "tester", "development": "tester developer"},
    "rebuild":         {"production": "", "staging": "tester", "development": "tester developer"},
    "stage_moves":     {"production": "", "staging": "developer",
                        "development": "tester developer"},
    "backup_download": {"production": "", "staging": "tester", "development": ""},
    "backup_restore":  {"production": "", "staging": "", "development": ""},
}
PRINCIPALS = ("anonymous", "outsider", "tester", "developer", "admin", "appliance_admin")
BRANCH_OF = {"production": "main", "staging": "qa", "development": "feature"}
STAGELESS = None


def expected_decision(principal: str, action: str, stage) -> str:
    """allow / hide (404) / deny (403) / login, from the table above."""
    if principal == "anonymous":
        return "login"
    if principal == "appliance_admin":
        return "allow"
    if principal == "outsider":
        return "hide"
    if principal == "admin":
        return "allow"
    if action in policy.PROJECT_ACTIONS:
        return "deny"
    if stage is STAGELESS:
        return "allow" if action == "view" else "deny"
    if stage == policy.ANY_STAGE:
        granted = any(principal in ROLES_ALLOWED[action][s].split() for s in policy.STAGES)
    else:
        granted = principal in ROLES_ALLOWED[action][stage].split()
    return "allow" if granted else "deny"


def test_the_policy_s_defaults_are_the_table_of_this_file():
    for action, stages_ in ROLES_ALLOWED.items():
        for stage, roles in stages_.items():
            assert policy.DEFAULTS[(stage, action)] == frozenset(roles.split()) | {"admin"}, \
                (stage, action)
    assert set(ROLES_ALLOWED) == set(policy.ACTIONS)


# -- the world: one project, three branches, their builds, mails and backups -----------------

MAIL = (b"From: odoo@acme.example\r\nTo: c@example.com\r\nSubject: hi\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; "
        b"filename=a.txt\r\n\r\nabc\r\n--b--\r\n")


def first_commit(config) -> str:
    """The project's repository with one commit (an empty module); its sha."""
    import pygit2
    path = config.paths.repos / "acme.git"
    git.init_repo(path, config.paths.hooks)
    repo = pygit2.Repository(str(path))
    builder = repo.TreeBuilder()
    builder.insert("__init__.py", repo.create_blob(b""), pygit2.GIT_FILEMODE_BLOB)
    who = pygit2.Signature("Ada", "ada@example.com")
    sha = repo.create_commit(None, who, who, "m", builder.write(), [])
    for branch in BRANCH_OF.values():
        repo.create_reference(f"refs/heads/{branch}", sha)
    return str(sha)


@pytest.fixture
def world(db, config):
    users = {}
    commit = first_commit(config)
    with db.transaction() as conn:
        for name in PRINCIPALS[1:]:
            users[name] = store_users.create_user(conn, name, PASSWORD,
                                                  is_admin=name == "appliance_admin")
        project = store_projects.create_project(conn, "acme", "18.0", "appl_")
        for role in ("tester", "developer", "admin"):
            store_users.add_member(conn, project["id"], users[role]["id"], role)
        ids = {}
        for stage, branch_name in BRANCH_OF.items():
            branch, _ = store_projects.ensure_branch(conn, project, branch_name)
            if branch["stage"] != stage:
                branch = store_projects.set_stage(conn, branch, stage, None)
            build = store_builds.enqueue(conn, project=project, branch=branch,
                                         commit=commit, message="m", author="a <a@b.c>")
            conn.execute("UPDATE builds SET state = 'stopped' WHERE id = %s", (build["id"],))
            [mail_id] = store_mails.add_mails(conn, [{
                "project_id": project["id"], "build_id": build["id"],
                "mail_from": "odoo@acme.example", "rcpt_to": ["c@example.com"],
                "size": len(MAIL), "raw": MAIL, **mime.summary(MAIL)}])
            backup = backups_store.start(conn, project=project, branch=branch, build=build,
                                         kind="manual")
            backups_store.finish(conn, backup["id"], "failed", seconds=1.0, error="test")
            session = shell_store.start_session(conn, build, users["admin"], "browser",
                                                f"control-{stage}", recorded=True)
            ids[stage] = {"branch": branch_name, "build_id": build["id"], "mail_id": mail_id,
                          "backup_id": backup["id"], "session_id": session["id"]}
        conn.execute("""INSERT INTO domains (project_id, branch_id, name, is_primary)
                        SELECT %s, id, 'shop.example.com', true FROM branches
                        WHERE project_id = %s AND stage = 'production'""",
                     (project["id"], project["id"]))
    for row in ids.values():
        source = containers.build_paths(config, row["build_id"]).src  # the editor's tree
        source.mkdir(parents=True, exist_ok=True)
        (source / "__init__.py").write_text("")
        recording = cast.path(config, row["session_id"])
        recording.parent.mkdir(parents=True, exist_ok=True)
        recording.write_text('{"version": 2, "width": 80, "height": 24}\n')
        path = layout.log_path(config, row["build_id"], LOG_NAME)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("a line\n")
    return {"users": users, "project": project, "ids": ids}


def client_of(app, principal: str):
    client = app.test_client()
    if principal != "anonymous":
        response = login(client, principal)
        assert response.status_code == 302, principal
    return client


# -- the routes ------------------------------------------------------------------------------

ROUTES = {  # endpoint: who may reach it (an action of appliance.policy; '*': any stage)
    "account.change_password": "signed_in",
    "account.create_token": "signed_in",
    "account.index": "signed_in",
    "account.password_link": "public",
    "account.revoke_token": "signed_in",
    "account.totp": "signed_in",
    "account.totp_begin": "signed_in",
    "account.totp_confirm": "signed_in",
    "account.totp_disable": "signed_in",
    "admin.archive": "appliance_admin",
    "admin.create": "appliance_admin",
    "admin.index": "appliance_admin",
    "admin.project": "appliance_admin",
    "admin.projects": "appliance_admin",
    "admin.rename": "appliance_admin",
    "admin.unarchive": "appliance_admin",
    "admin_users.disable": "appliance_admin",
    "admin_users.enable": "appliance_admin",
    "admin_users.invite": "appliance_admin",
    "admin_users.reset": "appliance_admin",
    "admin_users.set_admin": "appliance_admin",
    "admin_users.users": "appliance_admin",
    "api.branches": "view",
    "api.build": "view",
    "api.builds": "view",
    "api.health": "public",
    "api.history": "view",
    "api.projects": "signed_in",
    "audit.appliance_trail": "appliance_admin",
    "audit.project_trail": "settings",
    "auth.login": "public",
    "auth.login_code": "public",
    "auth.logout": "signed_in",
    "backups.download": "backup_download",
    "backups.now": "backup_download",
    "backups.restore": "backup_restore *",
    "backups.restore_now": "backup_restore *",
    "backups.tab": "backup_download",
    "branches.branch": "view",
    "branches.merge": "stage_moves *",
    "branches.move": "stage_moves *",
    "branches.rebuild": "rebuild",
    "branches.refresh": "rebuild",
    "branches.settings": "settings",
    "builds.build": "view",
    "builds.download": "logs",
    "builds.logs": "logs",
    "builds.start": "rebuild",
    "builds.stream": "logs",
    "collaborators.add": "settings",
    "collaborators.index": "view",
    "collaborators.permissions": "settings",
    "collaborators.remove": "settings",
    "domains.add": "settings",
    "domains.primary": "settings",
    "domains.remove": "settings",
    "editor.commit": "editor",
    "editor.editor": "editor",
    "editor.restart": "editor",
    "editor.save": "editor",
    "editor.task": "editor",
    "editor.update": "editor",
    "git.hook": "self_authenticated",
    "git.serve": "self_authenticated",
    "keys.add": "signed_in",
    "keys.index": "signed_in",
    "keys.remove": "signed_in",
    "mails.api_list": "mails *",
    "mails.api_mail": "mails",
    "mails.attachment": "mails",
    "mails.html": "mails",
    "mails.mail": "mails",
    "mails.raw": "mails",
    "mails.release": "mails",
    "projects.index": "signed_in",
    "projects.project": "view",
    "projects.save_settings": "settings",
    "projects.settings": "view",
    "proxy.ask": "self_authenticated",
    "proxy.auth": "self_authenticated",
    "proxy.stopped": "self_authenticated",
    "proxy.wake": "self_authenticated",
    "shell.page": "shell",
    "shell.recording": "shell",
    "shell.ticket": "shell",
    "uploads.chunks": "backup_restore *",
    "uploads.import_file": "backup_restore *",
    "uploads.start": "backup_restore *",
    "uploads.status": "backup_restore *",
}


# Values of URL parts that name no stage-bearing thing.
FIXED_VALUES = {"name": "acme", "index": 0, "domain": "shop.example.com", "user": "tester",
                "token_id": 1, "key_id": 1, "token": "t" * 32, "user_name": "tester"}
STAGE_VALUES = ("branch", "build_id", "mail_id", "backup_id", "session_id")
LOG_NAME = "odoo"


def routes(app):
    """(rule, method, endpoint) of every route but the built-in static one."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint in guard.BUILT_IN:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield rule, method, rule.endpoint


def urls_for(rule, world, principal_uploads) -> list[tuple[object, str]]:
    """(stage, url) for each stage the route can name; stage None when it names none."""
    args = set(rule.arguments)
    stage_args = args & set(STAGE_VALUES)
    unknown = args - stage_args - set(FIXED_VALUES) - {"upload_id", "rest"}
    if rule.endpoint == "builds.logs" or "logs" in rule.rule:
        unknown -= {"name"}
    assert not unknown, f"{rule.rule}: the matrix knows no value for {sorted(unknown)}"
    found = []
    stages_ = policy.STAGES if stage_args else (STAGELESS,)
    if rule.rule.startswith("/projects/<name>/backups/"):
        stages_ = ("production", "staging")  # development has no backups: no such page
    for stage in stages_:
        values = {key: value for key, value in FIXED_VALUES.items() if key in args}
        if stage is not STAGELESS:
            row = world["ids"][stage]
            values.update({key: row[key] for key in stage_args})
        if "/logs/" in rule.rule:
            values["name"] = LOG_NAME
        if "upload_id" in args:
            values["upload_id"] = principal_uploads
        if "rest" in args:
            values["rest"] = "info/refs"
        url = rule.rule
        for key, value in values.items():
            url = re.sub(rf"<(?:[a-z]+:)?{key}>", str(value), url)
        found.append((stage, url))
    return found


def outcome(response) -> str:
    if response.status_code in (302, 303) and "/login" in response.headers.get("Location", ""):
        return "login"
    if response.status_code == 401:
        return "login"
    if response.status_code == 404:
        return "hide"
    if response.status_code == 403:
        return "deny"
    return "allow"


def rule_in_table(endpoint: str) -> guard.Rule:
    entry = ROUTES[endpoint]
    if entry in ("public", "signed_in", "appliance_admin", "self_authenticated"):
        return guard.Rule(entry)
    action, _, any_stage = entry.partition(" ")
    return guard.Rule("project", action, policy.ANY_STAGE if any_stage else None)


def test_every_route_has_an_entry_in_this_table_and_declares_it(app):
    with app.test_request_context():
        listed = {endpoint for _rule, _method, endpoint in routes(app)}
        missing = sorted(listed - set(ROUTES))
        assert missing == [], f"routes without an entry in ROUTES: {missing}"
        assert sorted(set(ROUTES) - listed) == [], "entries of ROUTES for no route"
        differ = [f"{endpoint}: declares {guard.rule_of(endpoint)}, table says {ROUTES[endpoint]}"
                  for endpoint in sorted(listed) if guard.rule_of(endpoint) != rule_in_table(endpoint)]
    assert differ == [], "\n".join(differ)


def expected_for(rule_of_view, principal: str, stage) -> str:
    kind = rule_of_view.kind
    if kind == "public":
        return "public"
    if kind == "signed_in":
        return "login" if principal == "anonymous" else "allow"
    if kind == "appliance_admin":
        return {"anonymous": "login", "appliance_admin": "allow"}.get(principal, "hide")
    action = rule_of_view.action
    asked = rule_of_view.stage if rule_of_view.stage is not None else stage
    if action in policy.PROJECT_ACTIONS:
        asked = STAGELESS
    elif asked is STAGELESS and action != "view":
        asked = policy.ANY_STAGE
    return expected_decision(principal, action, asked)


def test_every_route_declares_a_rule(app):
    with app.test_request_context():
        missing = sorted(endpoint for _rule, _method, endpoint in routes(app)
                         if guard.rule_of(endpoint) is None)
    assert missing == [], f"routes without an access rule: {missing}"


def test_every_route_answers_each_principal_on_each_stage_as_the_table_says(app, world, db,
                                                                           config):
    clients = {p: client_of(app, p) for p in PRINCIPALS}
    uploads = {}
    with db.transaction() as conn:  # one upload of each person, named in the upload routes
        for principal in PRINCIPALS[1:]:
            upload_id = f"upload-of-{principal.replace('_', '-')}-0000"
            conn.execute("""INSERT INTO uploads (id, user_id, project_id, name, size)
                            VALUES (%s, %s, %s, 'dump.zip', 10)""",
                         (upload_id, world["users"][principal]["id"], world["project"]["id"]))
            uploads[principal] = upload_id
    uploads["anonymous"] = uploads["tester"]
    cells, wrong = 0, []
    with app.test_request_context():
        listed = list(routes(app))
    for rule, method, endpoint in listed:
        declared = rule_in_table(endpoint)  # what the route must do, not what it says
        if declared.kind == "self_authenticated":
            continue  # git and the proxy's questions: their own tests below
        for principal in PRINCIPALS:
            for stage, url in urls_for(rule, world, uploads[principal]):
                cells += 1
                response = clients[principal].open(url, method=method)
                response.close()
                got, want = outcome(response), expected_for(declared, principal, stage)
                if method == "POST" and want == "allow":
                    # Allowed: stopped by the missing CSRF token, nothing done.
                    ok = response.status_code == 400 and b"CSRF" in response.data
                elif want == "public":  # anyone; a step of signing in may send back
                    ok = got in ("allow", "login")
                else:
                    ok = got == want
                if not ok:
                    wrong.append(f"{method} {url} as {principal} ({stage}): "
                                 f"{response.status_code}, expected {want}")
    print(f"permission matrix: {cells} cells ({len(listed)} routes x {len(PRINCIPALS)} "
          f"principals x the stages each names)")
    assert wrong == [], "\n".join(wrong)


def test_git_over_http_lets_members_fetch_and_hides_the_project_from_others(app, world, db):
    import base64
    tokens = {}
    with db.transaction() as conn:
        for principal in PRINCIPALS[1:]:
            tokens[principal] = store_users.create_token(conn, principal)
    url = "/git/acme.git/info/refs?service=git-upload-pack"
    assert app.test_client().get(url).status_code == 401
    for principal, token in tokens.items():
        auth = base64.b64encode(f"{principal}:{token}".encode()).decode()
        response = app.test_client().get(url, headers={"Authorization": f"Basic {auth}"})
        if principal == "outsider":
            assert response.status_code in (403, 404), principal
        else:
            assert response.status_code != 401 and response.status_code < 403, \
                (principal, response.status_code)


def test_the_proxy_lets_through_to_a_build_only_those_who_may_open_it(app, world, config, db):
    """Caddy's forward_auth question, per stage: production is the live site (everyone),
    a development build of a private project its members', staging testers' and admins'."""
    for principal in PRINCIPALS:
        client = app.test_client()
        if principal != "anonymous":
            token = build_access.token_for(config, world["users"][principal])
            set_cookie(client, ACCESS_COOKIE, token)
        for stage, row in world["ids"].items():
            response = client.get(f"/_proxy/auth/{row['build_id']}")
            if stage == "production":
                want = 204
            else:
                want = 204 if expected_decision(principal, "open", stage) == "allow" else 302
            assert response.status_code == want, (principal, stage, response.status_code)


# -- the job entry points --------------------------------------------------------------------

def _restore(svc, project, ids, stage, user):
    return restores.request_restore(svc, project, ids["production"]["backup_id"],
                                    BRANCH_OF[stage], user)


def _import(svc, project, ids, stage, user):
    return restores.request_import(svc, project, Path("/nonexistent/dump.zip"), "dump.zip",
                                   BRANCH_OF[stage], user)


def _release(svc, project, ids, stage, user):
    return mail_jobs.release(svc, ids[stage]["mail_id"], "someone@example.com", user)


def _push(svc, project, ids, stage, user):
    with svc.db.transaction() as conn:
        return push.check(project, f"{'0' * 40} {'1' * 40} refs/heads/{BRANCH_OF[stage]}\n",
                          conn, user)


def _backup(svc, project, ids, stage, user):
    return backup_jobs.create(svc, project, BRANCH_OF[stage], "manual", user)


def _upload(svc, project, ids, stage, user):
    return upload_jobs.begin(svc, project, user, "dump.zip", 10)


def _append(svc, project, ids, stage, user):
    import io
    upload_id = uploads_store.new_id()
    with svc.db.transaction() as conn:  # the user's own upload, as begin makes it
        uploads_store.create(conn, project=project, user=user, name="dump.zip", size=10,
                             sha256=None, upload_id=upload_id)
    return upload_jobs.append(svc, project, user, upload_id, 0, 1, io.BytesIO(b"x"))


def _editor(call):
    def run(svc, project, ids, stage, user):
        return call(svc, user, ids[stage]["build_id"])
    return run


# entry point: (call, action, the stages it can act on)
ENTRY_POINTS = {
    "appliance.jobs.stages.move": (
        lambda svc, project, ids, stage, user: stages.move(
            svc, project, BRANCH_OF["development"], stage, user),
        "stage_moves", policy.STAGES),
    "appliance.jobs.stages.merge": (
        lambda svc, project, ids, stage, user: stages.merge(
            svc, project, "feature" if stage != "development" else "qa", BRANCH_OF[stage], user),
        "stage_moves", policy.STAGES),
    "appliance.jobs.stages.rebuild": (
        lambda svc, project, ids, stage, user: stages.rebuild(
            svc, project, BRANCH_OF[stage], user), "rebuild", policy.STAGES),
    "appliance.jobs.restores.request_restore": (_restore, "backup_restore",
                                                ("production", "staging")),
    "appliance.jobs.restores.request_import": (_import, "backup_restore",
                                               ("production", "staging")),
    "appliance.jobs.mail.release": (_release, "mails", policy.STAGES),
    "appliance.jobs.push.check": (_push, "stage_moves", policy.STAGES),
    "appliance.jobs.backup.create": (_backup, "backup_download", ("production", "staging")),
    "appliance.jobs.uploads.begin": (_upload, "backup_restore", (policy.ANY_STAGE,)),
    "appliance.jobs.uploads.append": (_append, "backup_restore", (policy.ANY_STAGE,)),
    "appliance.jobs.editor.save": (
        _editor(lambda svc, user, build_id: editor.save(svc, user, build_id, "x.py", "x", None)),
        "editor", ("staging", "development")),
    "appliance.jobs.editor.commit": (
        _editor(lambda svc, user, build_id: editor.commit(svc, user, build_id, "m")),
        ("editor", "stage_moves"), ("staging", "development")),
    "appliance.jobs.editor.request": (
        _editor(lambda svc, user, build_id: editor.request(svc, user, build_id,
                                                          "restart_server")),
        "editor", ("staging", "development")),
}
# Functions of appliance.jobs that take an acting user but are not entry points: each
# runs only after an entry point (or the push's pre-receive check) has asked the policy.
INTERNAL = {
    "appliance.jobs.stages.queue_head": "called by rebuild, restores and imports after their check",
    "appliance.jobs.stages._event": "records an event of a checked action",
    "appliance.jobs.restores._request": "the common part of request_restore and request_import",
    "appliance.jobs.push.received": "post-receive: push.check asked the policy in pre-receive",
    "appliance.jobs.push.record_commits": "history of a checked push or merge",
    "appliance.jobs.push._record_commits": "history of a checked push",
    "appliance.jobs.push._not_allowed": "the policy check of push.check itself",
    "appliance.jobs.push._audit": "records a push push.check allowed",
    "appliance.jobs.production_restore.safety_backup": "part of a restore the request checked",
    "appliance.jobs.editor.require": "the editor's policy check itself",
    "appliance.jobs.editor.author_email": "names the author of a checked commit",
    "appliance.jobs.restores._may_replace": "the restores' policy check itself",
    "appliance.jobs.project_admin.archive": "appliance admins' (their pages' rule); the user "
                                            "is who is recorded",
}


def acting_functions() -> set[str]:
    found = set()
    for module_info in pkgutil.iter_modules(appliance.jobs.__path__):
        module = __import__(f"appliance.jobs.{module_info.name}", fromlist=["_"])
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ != module.__name__:
                continue
            if "user" in inspect.signature(function).parameters:
                found.add(f"{module.__name__}.{name}")
    return found


def test_every_job_entry_point_that_acts_for_a_user_is_in_the_matrix():
    unlisted = acting_functions() - set(ENTRY_POINTS) - set(INTERNAL)
    assert unlisted == set(), f"job functions taking a user, not in the matrix: {unlisted}"


def test_every_job_entry_point_refuses_whom_the_table_refuses_and_changes_nothing(
        world, db, config):
    svc = Services(config, db)
    project = world["project"]
    wrong = []
    for name, (call, action, acts_on) in ENTRY_POINTS.items():
        for principal in PRINCIPALS[1:]:
            user = world["users"][principal]
            for stage in acts_on:
                wants = [expected_decision(principal, a, stage)
                         for a in ((action,) if isinstance(action, str) else action)]
                want = next((w for w in wants if w != "allow"), "allow")
                if name == "appliance.jobs.stages.move":  # leaving development too
                    leave = expected_decision(principal, action, "development")
                    want = want if leave == "allow" else leave
                with db.transaction() as conn:
                    before = conn.execute("SELECT count(*) AS n FROM builds").fetchone()["n"]
                try:
                    call(svc, project, world["ids"], stage, user)
                    got = "allow"
                except NotFound as exc:  # the policy's, or a thing missing past it
                    got = "hide" if f"no project {project['name']!r}" in str(exc) else "allow"
                except PermissionDenied:
                    got = "deny"
                except (ApplianceError, OSError):  # past the policy, the action itself failed
                    got = "allow"
                with db.transaction() as conn:
                    after = conn.execute("SELECT count(*) AS n FROM builds").fetchone()["n"]
                    # Put moved branches back where they were.
                    for stage_, branch in BRANCH_OF.items():
                        conn.execute("UPDATE branches SET stage = %s WHERE project_id = %s "
                                     "AND name = %s", (stage_, project["id"], branch))
                if got != want:
                    wrong.append(f"{name} as {principal} on {stage}: {got}, expected {want}")
                elif got != "allow" and after != before:
                    wrong.append(f"{name} as {principal} on {stage}: refused but queued a build")
    assert wrong == [], "\n".join(wrong)


# -- the examples, each with its form's token: refused, and nothing happens ----------

def signed_in(app, principal):
    client = client_of(app, principal)
    return client, csrf(client)


def test_a_tester_cannot_merge_into_production_and_nothing_happens(app, world, db, config):
    import pygit2
    client, token = signed_in(app, "tester")
    repo = pygit2.Repository(str(config.paths.repos / "acme.git"))
    before = repo.references["refs/heads/main"].target
    response = client.post("/projects/acme/branches/qa/merge",
                           data={"target": "main", "csrf_token": token})
    assert response.status_code == 403
    assert repo.references["refs/heads/main"].target == before
    with db.transaction() as conn:
        assert conn.execute("SELECT count(*) AS n FROM builds").fetchone()["n"] == 3


def test_a_tester_cannot_open_a_production_shell(app, world, db):
    client, token = signed_in(app, "tester")
    build_id = world["ids"]["production"]["build_id"]
    assert client.get(f"/builds/{build_id}/shell").status_code == 403
    response = client.post(f"/builds/{build_id}/shell/ticket", data={"csrf_token": token})
    assert response.status_code == 403
    with db.transaction() as conn:
        assert conn.execute("SELECT count(*) AS n FROM shell_tickets").fetchone()["n"] == 0


def test_a_tester_cannot_download_a_production_backup_but_may_staging_s(app, world):
    client, _ = signed_in(app, "tester")
    production = client.get(f"/backups/{world['ids']['production']['backup_id']}/download")
    assert production.status_code == 403
    staging = client.get(f"/backups/{world['ids']['staging']['backup_id']}/download")
    assert staging.status_code not in (401, 403, 404)


def test_a_developer_cannot_change_settings_and_nothing_changes(app, world, db):
    client, token = signed_in(app, "developer")
    response = client.post("/projects/acme/settings", data={
        "csrf_token": token, "relay_host": "smtp.evil.example", "relay_port": "25",
        "relay_security": "none", "mail_retention_days": "7"})
    assert response.status_code == 403
    with db.transaction() as conn:
        project = store_projects.get_project(conn, "acme")
    assert project["relay_host"] != "smtp.evil.example"
    response = client.post("/projects/acme/permissions",
                           data={"csrf_token": token, "production:logs:developer": "1"})
    assert response.status_code == 403
    with db.transaction() as conn:
        assert not policy.allows(conn, world["users"]["developer"], project, "logs",
                                 "production")


def test_a_project_admin_s_matrix_change_takes_effect_at_once(app, world, db):
    """An agency's client as a tester who sees staging only."""
    admin, token = signed_in(app, "admin")
    granted = {f"{stage}:{action}:{role}": "1"
               for (stage, action), roles in policy.DEFAULTS.items()
               for role in roles if role != "admin"
               and not (role == "tester" and stage != "staging")}
    assert admin.post("/projects/acme/permissions",
                      data={"csrf_token": token, **granted}).status_code == 303
    tester, _ = signed_in(app, "tester")
    page = tester.get("/projects/acme").get_data(as_text=True)
    assert 'data-branch="qa"' in page and 'data-branch="main"' not in page
    assert tester.get(f"/builds/{world['ids']['production']['build_id']}").status_code == 403
    assert tester.get(f"/builds/{world['ids']['development']['build_id']}").status_code == 403
    assert tester.get(f"/builds/{world['ids']['staging']['build_id']}").status_code == 200
    reset = admin.post("/projects/acme/permissions", data={"csrf_token": token, "reset": "1"})
    assert reset.status_code == 303
    assert tester.get(f"/builds/{world['ids']['production']['build_id']}").status_code == 200
