"""`ami-bridge inputs`: what a definition's fingerprint is made of, from git alone."""

from __future__ import annotations

import json

from testing import SEED_REPO
from testing.bridge import run_bridge
from testing.fingerprint import fingerprints
from testing.git import make_repo

# No AWS: a command that asked for it would fail to connect here.
OFFLINE = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x"}


def inputs(repo, *args: str):
    return run_bridge(["inputs", "--repo", str(repo.path), *args], OFFLINE)


def test_every_input_is_listed_with_why_and_the_fingerprint_is_the_resolves(repo):
    catalog = repo.catalog()
    catalog["definitions"]["snowflake"]["inputs"] = ["shared/motd"]
    repo.set_catalog(catalog)
    repo.write("shared/motd", "welcome\n")
    repo.commit("a catalog input")
    proc = inputs(repo, "snowflake", "--json")
    assert proc.code == 0, proc.stderr
    shown = json.loads(proc.stdout)
    expected, snapshot = fingerprints(repo)
    assert shown["fingerprint"] == expected["snowflake"]
    assert shown["parent_fingerprint"] == expected["base"]
    why = {i["path"]: i["why"] for i in shown["inputs"]}
    assert set(why) == {e.path for e in snapshot.fingerprints["snowflake"].inputs}
    assert why["snowflake"].startswith("the definition's directory")
    assert why["shared/motd"] == "listed in the catalog's `inputs`"
    assert why["base/tasks/cleanup.sh"].startswith("read by the template")
    objects = {i["path"]: i["object"] for i in shown["inputs"]}
    assert objects["shared/motd"] == repo.git("rev-parse", "HEAD:shared/motd")


def test_the_table_names_each_input_and_the_catalog_variables(repo):
    proc = inputs(repo, "snowflake")
    assert proc.code == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["definition", "snowflake"]
    rows = {line.split()[0]: line for line in lines if line.startswith(("base/", "snowflake"))}
    assert "read by the template" in rows["base/tasks/cleanup.sh"]
    variables = repo.catalog()["definitions"]["snowflake"].get("variables", {})
    for name, value in variables.items():
        assert any(line.split()[:2] == [name, json.dumps(value)] for line in lines)


def test_a_tracked_upstream_image_leaves_the_fingerprints_to_a_resolve(tmp_path):
    tracked = make_repo(tmp_path / "tracked", track_source=True)
    proc = inputs(tracked, "snowflake", "--json")
    assert proc.code == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert "resolve chooses" in shown["fingerprint"]
    assert "resolve chooses" in shown["parent_fingerprint"]
    base = json.loads(inputs(tracked, "base", "--json").stdout)
    (upstream,) = base["upstream"]
    assert upstream["owners"] and dict(upstream["filters"])["name"].startswith("ubuntu/images/")


def test_an_unknown_definition_is_one_paragraph_naming_the_known_ones(repo):
    proc = inputs(repo, "nope")
    assert proc.code == 1
    assert "nope" in proc.stderr and "snowflake" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_var_file_is_an_input_named_as_the_catalogs(repo):
    repo.write("vars/common.json", json.dumps({"docker_version": "27.3"}))
    catalog = repo.catalog()
    catalog["definitions"]["snowflake"]["var_files"] = ["vars/common.json"]
    repo.set_catalog(catalog)
    repo.commit("a var file")
    shown = json.loads(inputs(repo, "snowflake", "--json").stdout)
    why = {i["path"]: i["why"] for i in shown["inputs"]}
    assert why["vars/common.json"].startswith("listed in the catalog's `var_files`")


def test_each_variable_shows_its_value_and_layer_and_the_environment_its_value(tmp_path):
    """The seed's snowflake: `ami_base` is the bridge's (its `{{env}}` default is dead), the
    credentials' defaults are unused; a var file's, the catalog's and a listed PKR_VAR_'s
    values show where they come from, and a secret's value is masked."""
    repo = make_repo(tmp_path / "seed", SEED_REPO)
    repo.write("snowflake/flavor.json", json.dumps({"ami_name": "x", "flavor": "lemon"}))
    catalog = repo.catalog()
    catalog["definitions"]["snowflake"].update(
        var_files=["snowflake/flavor.json"], env=["DB_PASSWORD"]
    )
    repo.set_catalog(catalog)
    repo.commit("a var file and an environment variable")
    proc = run_bridge(
        ["inputs", "--repo", str(repo.path), "snowflake", "--json"],
        {**OFFLINE, "DB_PASSWORD": "hunter2-hunter2", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"},
    )
    assert proc.code == 0, proc.stderr
    shown = json.loads(proc.stdout)
    layers = {v["name"]: (v["origin"], v["used"]) for v in shown["template_variables"]}
    assert layers["ami_base"] == ("the bridge", True)
    assert layers["ami_name"] == ("the bridge", True)  # the bridge's -var wins over the file's
    assert layers["flavor"] == ("snowflake/flavor.json", False)
    assert layers["aws_secret_key"] == ("the defaults in snowflake/snowflake.json", False)
    assert shown["environment"] == {"DB_PASSWORD": "***"}
    assert "s3cr3t-value" not in proc.stdout and "hunter2" not in proc.stdout
