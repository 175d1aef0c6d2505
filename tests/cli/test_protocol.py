"""The external data-source contract, through the real `ami-bridge external` process."""

from __future__ import annotations

import json

import pytest

from bridge.cli.protocol import encode_result, parse_query
from bridge.errors import QueryError
from testing.bridge import external
from testing.sandbox import manifest_keys, own_images, tags_of

RESULT_KEYS = {
    "ami_id",
    "amis_json",
    "regions_json",
    "expires_at",
    "revoked",
    "revoke_reason",
    "revokes_at",
    "build_id",
    "built",
    "commit",
    "creation_date",
    "definition",
    "fingerprint",
    "found",
    "git_commit",
    "manifest_uri",
    "parent_ami_id",
    "region",
    "state",
}


def test_parse_query_defaults_and_empty_strings():
    q = parse_query(json.dumps({"definition": "base", "region": "", "owners": "self,123456789012"}))
    assert q.definitions == ("base",) and not q.many
    assert q.options.repo == "."
    assert q.options.region is None
    assert q.options.on_missing is None  # the command's default applies (external: build)
    assert q.options.on_revoked is None  # as on a miss
    fail = parse_query(json.dumps({"definition": "base", "on_revoked": "fail"}))
    assert fail.options.on_revoked == "fail"
    assert q.options.owners == ("self", "123456789012")
    assert q.options.allow_dirty is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON array"),
        ('"base"', "not a JSON string"),
        ('{"definition": 5}', "'definition' is a JSON number"),
        ('{"definition": "base", "region": null}', "'region' is a JSON null"),
        ('{"definition": "base", "tags": {"a": "b"}}', "'tags' is a JSON object"),
        ('{"definition": "base", "colour": "blue"}', "Unknown query key(s): colour"),
        ('{"repo": "."}', 'exactly one of "definition"'),
        ('{"definition": "base", "definitions": "base"}', 'exactly one of "definition"'),
        ('{"definitions": "base,Snow"}', "'definitions'"),
        ('{"definition": "base", "on_missing": "maybe"}', "'on_missing' has the invalid value"),
        ('{"definition": "base", "on_revoked": "report"}', "'on_revoked' has the invalid value"),
        ('{"definition": "base", "owners": "me"}', "'owners'"),
        ('{"definition": "Base!"}', "'definition'"),
        ('{"definition": "base", "allow_dirty": "yes"}', "'allow_dirty'"),
        ('{"definition": "base", "commit": "--output=/tmp/x"}', "'commit'"),
        ("[" * 100000, "not valid JSON"),
    ],
)
def test_bad_queries_are_named(text, message):
    with pytest.raises(QueryError) as err:
        parse_query(text)
    assert message in str(err.value)


def test_encode_result_is_one_object_of_strings():
    assert encode_result({"b": "2", "a": "1"}) == '{"a": "1", "b": "2"}\n'
    with pytest.raises(TypeError):
        encode_result({"a": 1})  # type: ignore[dict-item]


def test_external_builds_chain_and_prints_exactly_one_object(sandbox_env, repo, packer):
    proc = external(sandbox_env, {"definition": "snowflake", "repo": str(repo.path)})
    assert proc.code == 0, proc.stderr
    result = json.loads(proc.stdout)
    # Byte-exact: one JSON object of strings, a newline, nothing else.
    assert proc.stdout == json.dumps(result, sort_keys=True) + "\n"
    assert set(result) == RESULT_KEYS
    assert all(isinstance(v, str) for v in result.values())
    assert result["built"] == "true" and result["found"] == "true"
    assert result["definition"] == "snowflake" and result["region"] == "us-east-1"
    assert result["git_commit"] == result["commit"] == repo.git("rev-parse", "HEAD")
    assert json.loads(result["amis_json"]) == {"us-east-1": result["ami_id"]}
    images = {i["ImageId"]: i for i in own_images()}
    assert set(images) == {result["ami_id"], result["parent_ami_id"]}
    # The build ID the bridge reports is the one it tagged the image with.
    assert tags_of(images[result["ami_id"]])["ami-chain:build-id"] == result["build_id"]
    assert result["manifest_uri"].startswith("s3://ami-chain-manifests/images/snowflake/")
    assert len(manifest_keys()) == 2


def test_external_with_no_query_keys_reads_empty_object(sandbox_env):
    proc = external(sandbox_env, "{}")
    assert proc.code == 1 and proc.stdout == ""
    assert 'exactly one of "definition"' in proc.stderr


@pytest.mark.parametrize(
    "query",
    [
        "",
        "{oops",
        "[]",
        '{"definition": 1}',
        '{"definition": "base", "extra": "x"}',
        '{"definition": "ghost"}',
        '{"definition": "base", "repo": "/nonexistent/repo"}',
        '{"definition": "base", "catalog": "../../etc/passwd"}',
        '{"definition": "base", "catalog": "missing.json"}',
        '{"definition": "base", "on_missing": "explode"}',
        '{"definition": "base", "commit": "0000000000000000000000000000000000000000"}',
    ],
)
def test_every_error_exits_1_with_empty_stdout_and_builds_nothing(sandbox_env, repo, query):
    if query.startswith('{"definition"') and '"repo"' not in query:
        query = query[:-1] + f', "repo": {json.dumps(str(repo.path))}}}'
    proc = external(sandbox_env, query)
    assert proc.code == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("ami-bridge: error: ")
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1  # one paragraph
    assert own_images() == []
    assert manifest_keys() == []


def test_non_utf8_stdin_is_a_clear_error(sandbox_env):
    from testing.bridge import run_bridge

    proc = run_bridge(["external"], sandbox_env, stdin=b'{"definition": "\xff"}')
    assert proc.code == 1 and proc.stdout == ""
    assert "Traceback" not in proc.stderr


def test_broken_catalogs_fail_through_the_protocol(sandbox_env, repo):
    cases = {
        "parent cycle": lambda d: d["definitions"]["base"].update(parent="snowflake"),
        "does not exist": lambda d: d["definitions"]["base"].update(template="base/gone.json"),
        "leaves the repository": lambda d: d["definitions"]["base"].update(template="../x.json"),
        "not valid JSON": None,
    }
    original = repo.catalog()
    for message, mutate in cases.items():
        if mutate is None:
            repo.write("ami-chain.json", "{broken")
        else:
            data = json.loads(json.dumps(original))
            mutate(data)
            repo.set_catalog(data)
        proc = external(sandbox_env, {"definition": "snowflake", "repo": str(repo.path)})
        assert proc.code == 1 and proc.stdout == "", message
        assert message in proc.stderr and "Traceback" not in proc.stderr
    assert own_images() == [] and manifest_keys() == []


def test_one_call_resolves_several_definitions(sandbox_env, repo, packer):
    """A `definitions` query: every result in one flat map of strings, each JSON-encoded, the
    same as the one-definition query gives."""
    proc = external(sandbox_env, {"definitions": "snowflake,base", "repo": str(repo.path)})
    assert proc.code == 0, proc.stderr
    values = json.loads(proc.stdout)
    assert set(values) == {"base", "snowflake"}
    assert all(isinstance(v, str) for v in values.values())
    each = {name: json.loads(text) for name, text in values.items()}
    assert each["snowflake"]["parent_ami_id"] == each["base"]["ami_id"]
    assert {i["ImageId"] for i in own_images()} == {r["ami_id"] for r in each.values()}
    single = external(sandbox_env, {"definition": "snowflake", "repo": str(repo.path)})
    assert json.loads(single.stdout) == {**each["snowflake"], "built": "false", "state": "found"}
