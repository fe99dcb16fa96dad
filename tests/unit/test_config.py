"""Loading the YAML configuration: expansion, secrets from files, and errors that name keys."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from archiver.config.load import load_config, parse_config, parse_configs
from archiver.config.models import pick
from archiver.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SECRET = "5e6f7a8b"


def minimal(**source: object) -> dict[str, object]:
    return {
        "source": {"api_key": "a1b2c3d4", "api_secret": SECRET, **source},
        "storage": {"url": "s3://call-recordings/ccall"},
    }


def problems(data: object, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ=environ or {})
    return caught.value.problems


def test_example_config_loads_with_its_documented_defaults(tmp_path: Path) -> None:
    """config.example.yaml is valid, so it cannot rot; its secrets come from ARCHIVER_ETC's files."""
    (tmp_path / "archiver_ccall-api-key").write_text("a1b2c3d4\n")
    (tmp_path / "archiver_ccall-api-secret").write_text(SECRET + "\n")
    config = load_config(ROOT / "config.example.yaml", environ={"ARCHIVER_ETC": f"{tmp_path}/archiver_"})
    assert config.source.base_url == "https://api.ccall.vn"
    assert config.source.api_key.get_secret_value() == "a1b2c3d4"
    assert config.source.api_secret.get_secret_value() == SECRET
    assert config.storage.credentials_file == tmp_path / "archiver_aws-credentials"
    assert config.storage.bucket == "call-recordings"
    assert config.storage.prefix == "ccall"
    assert config.download.max_bytes == 2 << 30
    assert config.download.missing_after == timedelta(hours=24)
    assert config.poll.lookback == timedelta(hours=6)
    assert config.source.recording_hosts == ("api.ccall.vn",)


def test_the_example_config_reads_etc_archiver_in_a_root_shell() -> None:
    """Without ARCHIVER_ETC (a root shell, not a unit), the example names the files in /etc/archiver."""
    with pytest.raises(ConfigError) as caught:
        load_config(ROOT / "config.example.yaml", environ={})
    assert "At 'source.api_key_file': cannot read /etc/archiver/ccall-api-key" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "environ", "expanded"),
    [
        ("${A:-x}", {}, "x"),
        ("${A:-x}", {"A": ""}, "x"),  # empty counts as unset, as in the shell
        ("${A:-x}", {"A": "set"}, "set"),
        ("${A:-}", {}, ""),
        ("${A:-/etc/archiver/}key", {}, "/etc/archiver/key"),
        ("$${A:-x}", {}, "${A:-x}"),
    ],
)
def test_a_variable_may_name_a_default(text: str, environ: dict[str, str], expanded: str) -> None:
    """${VAR:-default} takes the default when VAR is unset or empty."""
    raw = {"source": {"api_key": "k", "api_secret": "s", "domain_name": text}, "storage": {"url": "file:///tmp/a"}}
    assert parse_config(raw, environ=environ).source.domain_name == expanded


def test_environment_variables_expand_in_any_string() -> None:
    """${VAR} is replaced from the environment; $$ stays a dollar sign."""
    data = minimal(domain_name="${TENANT}.ccall.vn")
    data["storage"] = {"url": "s3://${BUCKET}/p$$x"}
    with pytest.raises(ConfigError) as caught:  # '$' is not allowed in a prefix, which proves the expansion
        parse_config(data, environ={"TENANT": "acme", "BUCKET": "recordings"})
    assert caught.value.problems == [
        "At 'storage.url': key prefix segment 'p$x' may hold only letters, digits and . _ = - (got 's3://recordings/p$x')"
    ]
    config = parse_config(minimal(domain_name="${TENANT}.ccall.vn"), environ={"TENANT": "acme"})
    assert config.source.domain_name == "acme.ccall.vn"


def test_a_missing_environment_variable_names_the_key_and_the_variable() -> None:
    """An unset ${VAR} is an error at the key that uses it."""
    found = problems(minimal(api_secret="${CCALL_API_SECRET}"))
    assert found == ["At 'source.api_secret': environment variable CCALL_API_SECRET is not set"]


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    """api_secret_file is read (trailing newline dropped), as systemd's LoadCredential= provides it."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    data = minimal()
    del data["source"]["api_secret"]  # type: ignore[attr-defined]
    data["source"]["api_secret_file"] = str(secret_file)  # type: ignore[index]
    config = parse_config(data, environ={})
    assert config.source.api_secret.get_secret_value() == SECRET


def test_an_unreadable_secret_file_names_its_key(tmp_path: Path) -> None:
    """A secret file that cannot be read is reported at its key, with the reason."""
    data = minimal()
    del data["source"]["api_secret"]  # type: ignore[attr-defined]
    data["source"]["api_secret_file"] = str(tmp_path / "nope")  # type: ignore[index]
    found = problems(data)
    assert len(found) == 1
    assert found[0].startswith("At 'source.api_secret_file': cannot read")
    assert "No such file" in found[0]


def test_every_problem_is_reported_at_once_each_with_its_key() -> None:
    """Unknown keys, wrong types and missing values come back together, each naming its path."""
    data = {
        "source": {"api_key": "a1b2c3d4", "base_url": "ftp://x", "page_size": "many", "timezone": "Mars/Olympus"},
        "storage": {"url": "s3://call-recordings"},
        "download": {"concurency": 4, "max_bytes": "2GB"},
        "poll": {"interval": "soon"},
        "metrics": {"listen": "9464"},
    }
    found = problems(data)
    assert "At 'download.concurency': unknown key (did you mean 'concurrency'?)" in found
    assert "At 'source.api_secret': required (or set source.api_secret_file)" in found
    assert any(p.startswith("At 'source.base_url': must be an http:// or https:// URL") for p in found)
    assert any(p.startswith("At 'source.page_size':") and "'many'" in p for p in found)
    assert any(p.startswith("At 'source.timezone': unknown time zone 'Mars/Olympus'") for p in found)
    assert any(p.startswith("At 'download.max_bytes': expected a size") for p in found)
    assert any(p.startswith("At 'poll.interval': expected a duration") for p in found)
    assert any(p.startswith("At 'metrics.listen': must be host:port") for p in found)
    assert len(found) == 8


def test_the_secret_never_appears_in_a_problem() -> None:
    """A wrong-typed or invalid secret is reported without its value."""
    found = problems({"source": {"api_key": ["a1b2c3d4"], "api_secret": {"x": SECRET}}, "storage": {"url": "s3://bkt"}})
    assert found
    assert all(SECRET not in p and "a1b2c3d4" not in p for p in found)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://Bad_Bucket/x", "not a valid S3 bucket name"),
        ("s3://bucket/../escape", "key prefix segment '..'"),
        ("s3://bucket/a//b", "empty segment"),
        ("file://relative/path", "absolute path"),
        ("gs://bucket", "must start with s3:// or file://"),
    ],
)
def test_storage_urls_are_checked(url: str, message: str) -> None:
    """A storage URL that could misplace the archive is refused."""
    data = minimal()
    data["storage"] = {"url": url}
    found = problems(data)
    assert len(found) == 1
    assert found[0].startswith("At 'storage.url'")
    assert message in found[0]


def test_poll_lookback_must_exceed_settle() -> None:
    """A lookback no longer than settle would never read a settled call."""
    data = minimal()
    data["poll"] = {"lookback": "1m", "settle": "2m"}
    assert any("lookback must be longer than poll.settle" in p for p in problems(data))


def test_relative_state_path_is_read_from_the_config_folder(tmp_path: Path) -> None:
    """state.path relative to the config file does not depend on the working directory."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "source: {api_key: a1b2c3d4, api_secret: 5e6f7a8b}\nstorage: {url: 'file:///srv/a'}\nstate: {path: l.db}\n"
    )
    assert load_config(path, environ={}).state.path == tmp_path / "l.db"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("source: [unclosed", "not valid YAML at line 1"), ("- a list\n", "must be a mapping")],
)
def test_unparseable_files_say_where(tmp_path: Path, text: str, expected: str) -> None:
    """YAML syntax errors name the line; a document of the wrong shape says what is expected."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(path, environ={})


def test_allowed_hosts_are_normalised_and_checked() -> None:
    """Hosts are lower-cased; something that is not a host is refused."""
    config = parse_config(
        minimal(allowed_recording_hosts=["REC.ccall.vn", "*.cdn.ccall.vn", "10.0.0.5:8080"]), environ={}
    )
    assert config.source.recording_hosts == ("rec.ccall.vn", "*.cdn.ccall.vn", "10.0.0.5:8080")
    found = problems(minimal(allowed_recording_hosts=["http://evil/"]))
    assert found[0].startswith("At 'source.allowed_recording_hosts'")


def several(*sources: dict[str, object], **top: object) -> dict[str, object]:
    items = [{"api_key": "a1b2c3d4", "api_secret": SECRET, **s} for s in sources]
    return {"sources": items, "storage": {"url": "s3://call-recordings/ccall"}, **top}


def test_several_sources_each_get_a_prefix_and_a_ledger_of_their_own(tmp_path: Path) -> None:
    """sources: gives one Config per source under the shared bucket prefix; control objects stay shared."""
    data = several(
        {"name": "hq"},
        {"name": "branch-2", "base_url": "https://pbx2.example.vn", "prefix": "tenants/b2", "timezone": "UTC"},
        state={"path": str(tmp_path / "ledger.sqlite3")},
    )
    hq, branch = parse_configs(data, environ={})
    assert (hq.name, hq.storage.url, hq.storage.prefix) == ("hq", "s3://call-recordings/ccall/hq", "ccall/hq")
    assert branch.storage.prefix == "ccall/tenants/b2"
    assert branch.source.base_url == "https://pbx2.example.vn"
    assert str(branch.source.tz) == "UTC"
    assert hq.state.path == tmp_path / "ledger.hq.sqlite3"
    assert branch.state.path == tmp_path / "ledger.branch-2.sqlite3"
    assert hq.control_prefix == branch.control_prefix == "ccall/_archiver"
    assert pick((hq, branch), "branch-2") == (branch,)
    with pytest.raises(ConfigError, match="no source named 'x' \\(known: hq, branch-2\\)"):
        pick((hq, branch), "x")
    with pytest.raises(ConfigError, match="one source:"):
        parse_config(data, environ={})  # a command that takes a single source says so


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (several({"name": "a"}, source={"api_key": "k", "api_secret": "s"}), "either source: .* or sources:"),
        ({"storage": {"url": "s3://b/p"}}, "either source: .* or sources:"),
        ({"source": None, "storage": {"url": "s3://bkt/p"}}, "either source: .* or sources:"),
        (several(), "lists no source"),
        (several({"name": "a"}, {"name": "a"}), "two sources share a name"),
        (several({"name": "a"}, {"name": "b", "prefix": "a/b"}), "prefix 'a/b' lies inside 'a'"),
        (several({"name": "_archiver"}), "sources\\[0\\].name"),
        (several({"name": "a", "prefix": "_archiver"}), "kept for control objects"),
        (several({"name": "Bad Name"}), "At 'sources\\[0\\].name': must be 1 to 32"),
        (
            several({"name": "a", "tymezone": "UTC"}),
            "At 'sources\\[0\\].tymezone': unknown key \\(did you mean 'timezone'\\?\\)",
        ),
        (several({"name": "a"}, {"name": "b", "api_key": None}), "At 'sources\\[1\\].api_key'"),
    ],
)
def test_a_bad_sources_list_is_refused_with_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_configs(data, environ={})
    assert any(re.search(message, p) for p in caught.value.problems), caught.value.problems


def test_a_source_s_secret_file_error_names_its_item(tmp_path: Path) -> None:
    data = several({"name": "a"}, {"name": "b", "api_secret": None})
    items = data["sources"]
    assert isinstance(items, list)
    del items[1]["api_secret"]
    items[1]["api_secret_file"] = str(tmp_path / "missing")
    assert any(p.startswith("At 'sources[1].api_secret_file': cannot read") for p in problems_all(data))


def problems_all(data: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_configs(data, environ={})
    return caught.value.problems


def test_a_read_only_command_needs_no_pbx_credentials_and_no_source_section(tmp_path: Path) -> None:
    """find, show, export, browse and verify: storage settings alone, unset ${VAR}s and unreadable secret files ignored."""
    alone = parse_configs({"storage": {"url": "file:///srv/archive"}}, environ={}, read_only=True)
    assert alone[0].source.tz.key == "Asia/Ho_Chi_Minh"  # dates are read in the default zone
    assert alone[0].source.tz_given is None  # but the file did not say it: expire asks the archive
    assert alone[0].secrets() == ()
    raw = {
        "source": {"api_key": "${UNSET_KEY}", "api_secret_file": str(tmp_path / "absent"), "timezone": "UTC"},
        "storage": {"url": "file:///srv/archive"},
    }
    [config] = parse_configs(raw, environ={}, read_only=True)
    assert config.source.timezone == "UTC"
    assert config.source.tz_given is not None
    with pytest.raises(ConfigError) as raised:  # the archiving commands still need them, and say which
        parse_configs(raw, environ={})
    assert any("UNSET_KEY" in p for p in raised.value.problems)
    assert any("api_secret_file" in p for p in raised.value.problems)
    with pytest.raises(ConfigError) as raised:
        parse_configs({"storage": {"url": "file:///srv/archive"}}, environ={})
    assert any("source" in p for p in raised.value.problems)


def test_text_is_never_made_from_a_number_and_a_list_never_from_text() -> None:
    """YAML reads an unquoted 0123 as the number 83: a key kept as '83' would fail at the PBX,
    much later, so a number where text belongs is refused. A single host where a list belongs
    is refused too, not read as a list of its letters."""
    found = problems(minimal(api_key=83, allowed_recording_hosts="rec.ccall.vn", page_size=7.5))
    assert found == [
        "At 'source.api_key': must be text (quote it in YAML)",
        "At 'source.page_size': must be a whole number (got 7.5)",
        "At 'source.allowed_recording_hosts': must be a list (got 'rec.ccall.vn')",
    ]


def test_values_from_the_environment_are_read_as_their_fields_type() -> None:
    """`${VAR}` always expands to text; a number or a yes/no field reads it as one."""
    data = minimal(page_size="${PAGE}")
    data["storage"] = {"url": "s3://call-recordings/ccall", "legal_hold": "${HOLD}"}
    config = parse_config(data, environ={"PAGE": "250", "HOLD": "yes"})
    assert (config.source.page_size, config.storage.legal_hold) == (250, True)
    assert problems(data, {"PAGE": "250", "HOLD": "maybe"}) == [
        "At 'storage.legal_hold': must be true or false (got 'maybe')"
    ]


def test_browse_scopes_and_tls_are_read_and_every_source_they_name_must_exist() -> None:
    """browse.scopes maps users, groups and * to sources (or SOURCE/EXTENSION, or all); a source
    it names must be one of the file's; browse.tls needs both files; scopes need a login."""
    sources = [{"name": "hq", "api_key": "k", "api_secret": "s"}, {"name": "danang", "api_key": "k", "api_secret": "s"}]
    browse = {
        "users_file": "/etc/archiver/browse-users",
        "scopes": {"alice": ["hq"], "group:qa": ["hq", "danang/101"], "bob": "danang", "*": "all"},
        "tls": {"cert": "/etc/archiver/browse.crt", "key": "/etc/archiver/browse.key"},
    }
    [config, _] = parse_configs(
        {"sources": sources, "storage": {"url": "s3://call-recordings"}, "browse": browse}, environ={}
    )
    assert config.browse.scopes == (
        ("alice", ("hq",)),
        ("group:qa", ("hq", "danang/101")),
        ("bob", ("danang",)),
        ("*", ("all",)),
    )
    assert config.browse.tls is not None
    assert config.browse.tls.key == Path("/etc/archiver/browse.key")

    def found(**section: object) -> list[str]:
        with pytest.raises(ConfigError) as caught:
            parse_configs(
                {"sources": sources, "storage": {"url": "s3://call-recordings"}, "browse": section}, environ={}
            )
        return caught.value.problems

    assert found(users_file="/u", scopes={"alice": ["hqq"]}) == [
        "At '(top level)': browse.scopes: 'alice' is given 'hqq', but there is no source 'hqq' (known: hq, danang)"
    ]
    assert found(scopes={"alice": ["hq"]})[0].startswith(
        "At 'browse': browse.scopes says what each signed-in user may see"
    )
    assert found(users_file="/u", scopes={"alice": ["hq/1 2"]})[0].startswith(
        "At 'browse.scopes': alice: 'hq/1 2' is not"
    )
    assert found(users_file="/u", scopes={"alice": []})[0].startswith(
        "At 'browse.scopes': alice: must be all or a list"
    )
    assert found(users_file="/u", tls={"cert": "/c"}) == ["At 'browse.tls.key': required"]
    single = parse_config(
        {**minimal(), "browse": {"users_file": "/u", "scopes": {"alice": ["default/101"]}}}, environ={}
    )
    assert single.browse.scopes == (("alice", ("default/101",)),)


def test_the_pbx_retention_is_a_duration_of_days_or_null() -> None:
    """source.recording_retention (for the cursor-lag alert) reads as a duration, defaults to
    null, and a value under a day is refused with its key."""
    assert parse_config(minimal(), environ={}).source.recording_retention is None
    assert parse_config(minimal(recording_retention="90d"), environ={}).source.recording_retention == timedelta(days=90)
    found = problems(minimal(recording_retention="12h"))
    assert any(p.startswith("At 'source.recording_retention': must be at least 1d") for p in found), found


def test_a_secret_systemd_did_not_hand_over_says_where_to_put_it() -> None:
    """Started by its unit before the secrets were put in /etc/archiver (a fresh package install),
    the problem names the key, the file, and the folder the unit loads credentials from."""
    data = minimal()
    del data["source"]["api_key"]  # type: ignore[attr-defined]
    data["source"]["api_key_file"] = "/run/credentials/archiver.service/archiver_ccall-api-key"  # type: ignore[index]
    found = problems(data)
    assert found == [
        "At 'source.api_key_file': cannot read /run/credentials/archiver.service/archiver_ccall-api-key: "
        "No such file or directory (a systemd credential: put the file in the folder the unit's "
        "LoadCredential= names, /etc/archiver as shipped)"
    ]


RECIPIENT = "age1ud5dtkkxux8x9dr8t86h53e8kgpxm0dnxcvpanxwapr0m83fasls5rr6w9"


@pytest.mark.parametrize(
    ("encryption", "message"),
    [
        (
            {"age_recipients": ["age1notakey"], "keys_url": "s3://call-keys/ccall"},
            "At 'storage.encryption.age_recipients': item 1: 'age1notakey' is not an age X25519 recipient",
        ),
        (
            {"age_recipients": [], "keys_url": "s3://call-keys/ccall"},
            "At 'storage.encryption.age_recipients': must list at least one age recipient",
        ),
        (
            {"age_recipients": [RECIPIENT, "ssh-ed25519 AAAA"], "keys_url": "s3://call-keys/ccall"},
            "item 2: 'ssh-ed25519 ' is not an age X25519 recipient (they start with age1…)",
        ),
        (
            {"age_recipients": RECIPIENT, "keys_url": "s3://call-keys/ccall"},
            "At 'storage.encryption.age_recipients': must be a list",
        ),
        ({"age_recipients": [RECIPIENT]}, "At 'storage.encryption.keys_url': required"),
        (
            {"age_recipients": [RECIPIENT], "keys_url": "https://keys"},
            "At 'storage.encryption.keys_url': must start with s3://",
        ),
        (
            {"age_recipients": [RECIPIENT], "keys_url": "s3://call-recordings/ccall/keys"},
            "storage.encryption.keys_url (s3://call-recordings/ccall/keys) and storage.url (s3://call-recordings/ccall) overlap",
        ),
        ({"age_recipients": [RECIPIENT], "keys_url": "s3://call-recordings"}, "overlap"),
        (
            {"age_recipients": [RECIPIENT], "keys_url": "s3://call-keys/ccall", "recipients": []},
            "At 'storage.encryption.recipients': unknown key",
        ),
    ],
)
def test_a_bad_encryption_setting_is_refused_naming_its_key(encryption: dict[str, object], message: str) -> None:
    """Recipients must parse as age X25519 recipients; the keys must live apart from the archive."""
    data = minimal()
    data["storage"] = {"url": "s3://call-recordings/ccall", "encryption": encryption}
    found = problems(data)
    assert any(message in p for p in found), found


def test_each_source_keeps_its_keys_under_its_own_prefix() -> None:
    """With sources:, a source's keys go under the keys prefix and the source's prefix, as its calls do."""
    data: dict[str, object] = {
        "sources": [
            {"name": "hq", "api_key": "k", "api_secret": "s"},
            {"name": "dn", "prefix": "danang", "api_key": "k", "api_secret": "s"},
        ],
        "storage": {
            "url": "s3://call-recordings/ccall",
            "encryption": {"age_recipients": [RECIPIENT], "keys_url": "s3://call-keys/k"},
        },
    }
    hq, dn = parse_configs(data, environ={})
    assert (hq.storage.encryption and hq.storage.encryption.prefix) == "k/hq"
    assert (dn.storage.encryption and dn.storage.encryption.prefix) == "k/danang"
    assert dn.storage.encryption.age_recipients == (RECIPIENT,)  # type: ignore[union-attr]
