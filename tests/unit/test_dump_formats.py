"""The formats of imported dumps, told and checked from small files made here."""

from __future__ import annotations

import gzip
import io
import json
import stat
import zipfile

import pytest

from appliance.errors import UserError
from appliance.jobs import dump_formats as formats

ODOO_SQL = b"""--
-- PostgreSQL database dump
--

SET client_encoding = 'UTF8';
CREATE TABLE public.ir_module_module (
    id integer NOT NULL,
    name character varying NOT NULL,
    state character varying,
    latest_version character varying
);
CREATE TABLE public.res_users (
    id integer NOT NULL,
    login character varying NOT NULL
);
COPY public.ir_module_module (id, name, state, latest_version) FROM stdin;
1\tbase\tinstalled\t18.0.1.3
2\tshop\tinstalled\t18.0.1.0.0
\\.

--
-- PostgreSQL database dump complete
--

"""
MANIFEST = {"odoo_dump": "1", "db_name": "acme", "version": "18.0-20241005",
            "version_info": [18, 0, 0, "final", 0, ""], "major_version": "18.0",
            "pg_version": "15.0", "modules": {"base": "18.0.1.3"}}


def make_zip(path, entries: dict, links: tuple = ()):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return path


def odoo_zip(path, **extra):
    return make_zip(path, {"dump.sql": ODOO_SQL, "manifest.json": json.dumps(MANIFEST),
                           "filestore/ab/ab12": b"attachment", **extra})


@pytest.mark.parametrize("content, kind", [
    (b"PK\x03\x04rest", "zip"), (gzip.compress(b"-- sql"), "sql.gz"),
    (b"PGDMP\x01\x0e\x00", "custom"), (ODOO_SQL, "sql"), (b"SET statement_timeout = 0;", "sql"),
])
def test_a_file_s_kind_is_told_by_its_first_bytes_not_its_name(tmp_path, content, kind):
    path = tmp_path / "upload.bin"
    path.write_bytes(content)
    assert formats.sniff(path) == kind


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n....", b"hello world", b"",
                                     b"\x00\x01\x02binary"])
def test_garbage_is_not_a_dump(tmp_path, content):
    path = tmp_path / "upload.zip"
    path.write_bytes(content)
    with pytest.raises(UserError, match="not a database dump|empty"):
        formats.sniff(path)


def test_a_database_manager_zip_lists_its_dump_manifest_and_filestore(tmp_path):
    contents = formats.read_zip(odoo_zip(tmp_path / "a.zip"))
    assert contents.dump_member == "dump.sql" and contents.dump_bytes == len(ODOO_SQL)
    assert contents.manifest == MANIFEST
    assert contents.filestore == [("filestore/ab/ab12", "ab/ab12", 10)]
    assert contents.filestore_bytes == 10


@pytest.mark.parametrize("name", ["filestore/../../etc/cron.d/x", "/etc/passwd",
                                  "filestore/ab/../../../x", "filestore\\..\\x"])
def test_a_zip_entry_leaving_its_folder_is_refused(tmp_path, name):
    path = odoo_zip(tmp_path / "a.zip", **{name: b"x"})
    with pytest.raises(UserError, match="leaves its folder|absolute or unusual"):
        formats.read_zip(path)


def test_a_link_in_a_zip_is_refused(tmp_path):
    path = make_zip(tmp_path / "a.zip", {"dump.sql": ODOO_SQL}, links=("filestore/ab/cd",))
    with pytest.raises(UserError, match="a link"):
        formats.read_zip(path)


def test_a_zip_without_dump_sql_is_not_a_backup(tmp_path):
    path = make_zip(tmp_path / "a.zip", {"manifest.json": json.dumps(MANIFEST)})
    with pytest.raises(UserError, match="no dump.sql"):
        formats.read_zip(path)


def test_a_zip_bomb_is_refused_by_its_ratio_before_anything_is_unpacked(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("dump.sql", ODOO_SQL)
        with archive.open("filestore/00/zeros", "w") as out:
            chunk = bytes(1 << 20)
            for _ in range(80):
                out.write(chunk)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(UserError, match="zip bomb"):
        formats.read_zip(path)


def test_a_zip_over_the_size_or_entry_limits_is_refused(tmp_path):
    path = odoo_zip(tmp_path / "a.zip", **{f"filestore/ab/{n}": b"x" for n in range(5)})
    with pytest.raises(UserError, match="entries"):
        formats.read_zip(path, formats.Limits(max_entries=4))
    with pytest.raises(UserError, match="unpacks to"):
        formats.read_zip(path, formats.Limits(max_bytes=100))


def test_a_zip_cut_short_has_no_central_directory(tmp_path):
    path = odoo_zip(tmp_path / "a.zip")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 30])
    with pytest.raises(UserError, match="damaged or cut short"):
        formats.read_zip(path)


def test_a_manifest_of_another_major_version_says_both_versions():
    manifest = dict(MANIFEST, major_version="17.0", version="17.0")
    with pytest.raises(UserError, match=r"this is a dump of Odoo 17\.0; the project runs 18\.0"):
        formats.check_manifest(manifest, "18.0")
    formats.check_manifest(MANIFEST, "18.0")


def test_a_manifest_without_major_version_is_read_from_version_info():
    old = {"odoo_dump": "1", "db_name": "x", "version_info": [16, 0, 0, "final", 0],
           "modules": {}}
    assert formats.manifest_major(old) == "16.0"
    with pytest.raises(UserError, match="17.0"):
        formats.check_manifest(old, "17.0")


def test_a_json_that_is_not_odoo_s_manifest_is_refused():
    with pytest.raises(UserError, match="not an Odoo dump manifest"):
        formats.check_manifest({"hello": "world"}, "18.0")


def test_an_odoo_sql_dump_is_whole_odoo_s_and_of_its_base_version():
    scan = formats.scan_sql(io.BytesIO(ODOO_SQL))
    assert scan.complete and {"ir_module_module", "res_users"} <= scan.tables
    assert (scan.base_version, scan.major) == ("18.0.1.3", "18.0")
    scan.verdict("18.0")
    with pytest.raises(UserError, match="this is a dump of Odoo 18.0; the project runs 17.0"):
        scan.verdict("17.0")


def test_a_sql_dump_without_its_completion_line_is_cut_short():
    cut = ODOO_SQL[: ODOO_SQL.index(b"-- PostgreSQL database dump complete")]
    with pytest.raises(UserError, match="cut short"):
        formats.scan_sql(io.BytesIO(cut)).verdict("18.0")


def test_a_dump_of_another_application_is_not_odoo_s():
    other = ODOO_SQL.replace(b"public.res_users", b"public.customers")
    with pytest.raises(UserError, match="not an Odoo database: it has no res_users table"):
        formats.scan_sql(io.BytesIO(other)).verdict("18.0")


def test_a_truncated_gzip_is_told_apart_from_a_whole_one():
    data = gzip.compress(ODOO_SQL)
    formats.scan_sql(gzip.GzipFile(fileobj=io.BytesIO(data))).verdict("18.0")
    with pytest.raises(UserError, match="cut short"):
        formats.scan_sql(gzip.GzipFile(fileobj=io.BytesIO(data[:-12])))
    damaged = data[:-8] + b"\x00\x00\x00\x00" + data[-4:]
    with pytest.raises(UserError, match="damaged"):
        formats.scan_sql(gzip.GzipFile(fileobj=io.BytesIO(damaged)))


def test_long_lines_are_read_in_pieces_and_never_taken_for_statements():
    long_row = b"3\tbig\tinstalled\t" + b"x" * (3 * formats.LINE_PIECE_BYTES) + b"\n"
    dump = ODOO_SQL.replace(b"\\.\n", long_row + b"\\.\n")
    scan = formats.scan_sql(io.BytesIO(dump))
    assert scan.complete and scan.base_version == "18.0.1.3"


def test_module_versions_give_their_series():
    assert formats.module_major("18.0.1.3") == "18.0"
    assert formats.module_major("saas~17.2.1.0") == "saas~17.2"
    assert formats.module_major("1.0") is None


def test_a_psql_command_in_a_dump_is_refused_but_pg_dump_s_own_guards_pass():
    guarded = b"\\restrict abc\n" + ODOO_SQL + b"\\unrestrict abc\n"
    formats.scan_sql(io.BytesIO(guarded)).verdict("18.0")
    shell = ODOO_SQL.replace(b"SET client_encoding", b"\\! rm -rf /tmp/x\nSET client_encoding")
    with pytest.raises(UserError, match=r"psql command \\!"):
        formats.scan_sql(io.BytesIO(shell)).verdict("18.0")
