"""Slim service models (service_models.py): faithful to botocore's, complete for what the bridge calls."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import botocore
import botocore.session
import pytest
from botocore.exceptions import DataNotFoundError
from botocore.loaders import JSONFileLoader, Loader

from bridge.aws import service_models
from bridge.aws.clients import AwsClients
from testing import ROOT

BRIDGE = ROOT / "bridge"


@pytest.mark.parametrize("service", sorted(service_models.OPERATIONS))
def test_a_slim_model_is_the_full_model_cut_to_the_operations_and_the_shapes_they_reach(service):
    full = Loader().load_service_model(service, "service-2")
    slim = service_models.slim(full, service_models.OPERATIONS[service])
    assert slim["metadata"] == full["metadata"]
    assert set(slim["operations"]) == service_models.OPERATIONS[service]
    for name, op in slim["operations"].items():
        assert op == full["operations"][name]
    for name, shape in slim["shapes"].items():
        assert shape == full["shapes"][name]
    # Closed: every shape an operation or a kept shape names is kept.
    refs = [r["shape"] for op in slim["operations"].values() for r in service_models._op_refs(op)]
    refs += [
        r["shape"] for shape in slim["shapes"].values() for r in service_models._shape_refs(shape)
    ]
    assert set(refs) <= set(slim["shapes"])
    # botocore builds every operation's input and output from it.
    model = botocore.session.get_session().get_service_model(service)
    for op in slim["operations"]:
        kept = _members(models_service_model(slim, service).operation_model(op).input_shape)
        assert kept == _members(model.operation_model(op).input_shape)


def models_service_model(slim, service):
    from botocore.model import ServiceModel

    return ServiceModel(slim, service_name=service)


def _members(shape, depth=4):
    if shape is None or depth == 0:
        return None
    if shape.type_name == "structure":
        return {k: _members(v, depth - 1) for k, v in shape.members.items()}
    if shape.type_name == "list":
        return [_members(shape.member, depth - 1)]
    return shape.type_name


def test_every_operation_the_bridge_calls_is_in_the_slim_models():
    """Each client method the bridge calls is an operation the slim model of a service that has
    it keeps (a name several services share, such as delete_tags, counts once listed by one)."""
    session = botocore.session.get_session()
    apis: dict[str, dict[str, str]] = {}
    waiters: dict[str, dict[str, str]] = {}
    for service in service_models.OPERATIONS:
        client = session.create_client(
            service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        apis[service] = client.meta.method_to_api_mapping
        waiters[service] = {
            name: client.get_waiter(name).config.operation for name in client.waiter_names
        }
    called: set[tuple[frozenset[tuple[str, str]], str]] = set()
    # The sandbox calls moto's backends, not AWS.
    sources = [p for p in BRIDGE.rglob("*.py") if "sandbox" not in p.relative_to(BRIDGE).parts]
    for source in sorted(sources):
        for node in ast.walk(ast.parse(source.read_text())):
            if not isinstance(node, ast.Call):
                continue
            called_as = node.func.attr if isinstance(node.func, ast.Attribute) else ""
            called_as = called_as or (node.func.id if isinstance(node.func, ast.Name) else "")
            # An operation named as a string: a waiter's, or a paginator's (get_paginator, and
            # launchers.listed_pages, which pages through one).
            named = [
                a.value
                for a in node.args
                if isinstance(a, ast.Constant) and isinstance(a.value, str)
            ]
            if called_as == "get_waiter" and named:
                name = named[0]
                owners = {(s, w[name]) for s, w in waiters.items() if name in w}
            elif called_as in ("get_paginator", "listed_pages") and named:
                name = named[0]
                owners = {(s, m[name]) for s, m in apis.items() if name in m}
            elif isinstance(node.func, ast.Attribute):
                name = called_as
                owners = {(s, m[name]) for s, m in apis.items() if name in m}
            else:
                continue
            if owners:
                called.add((frozenset(owners), name))
    names = {n for _, n in called}
    assert "describe_images" in names and "put_object" in names
    missing = sorted(
        name
        for owners, name in called
        if not any(op in service_models.OPERATIONS[s] for s, op in owners)
    )
    assert not missing, f"add the operations of {missing} to service_models.OPERATIONS"


def test_the_first_client_writes_the_slim_model_and_later_clients_load_it(tmp_path, sandbox_env):
    first = AwsClients(model_cache=tmp_path).ec2("us-east-1")
    written = list(tmp_path.glob("*/ec2/*/service-2.json"))
    assert len(written) == 1
    later = AwsClients(model_cache=tmp_path).ec2("us-east-1")
    assert sorted(later.meta.service_model.operation_names) == sorted(
        service_models.OPERATIONS["ec2"]
    )
    assert (
        later.describe_images(Owners=["self"])["Images"]
        == first.describe_images(Owners=["self"])["Images"]
    )
    assert len(AwsClients().ec2("us-east-1").meta.service_model.operation_names) > 500


def test_an_unwritable_cache_leaves_the_full_model_and_no_files(tmp_path, sandbox_env):
    blocked = tmp_path / "models"
    blocked.write_text("a file where the cache directory would be")
    ec2 = AwsClients(model_cache=blocked).ec2("us-east-1")
    assert len(ec2.meta.service_model.operation_names) > 500
    assert [p.name for p in tmp_path.iterdir()] == ["models"]


def test_clients_read_only_the_slim_tree_and_resolve_as_botocore_does(tmp_path, monkeypatch):
    """Once written, the tree is all a client reads (no listing of botocore's 400 services, no
    1 MB endpoints.json), and what it reads gives the clients botocore's own data gives."""
    for key in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(key)
    AwsClients(model_cache=tmp_path).ec2("us-east-1")  # writes the tree
    reads: list[str] = []
    listed: list[str] = []
    original, listdir = JSONFileLoader.load_file, os.listdir
    monkeypatch.setattr(
        JSONFileLoader, "load_file", lambda self, path: reads.append(path) or original(self, path)
    )
    monkeypatch.setattr(os, "listdir", lambda path=".": listed.append(str(path)) or listdir(path))
    slim_session = botocore.session.get_session()
    slim_loader = service_models.loader(tmp_path)
    slim_session.register_component("data_loader", slim_loader)
    regions = ("us-east-1", "eu-central-1", "cn-north-1", "us-gov-west-1")
    credentials = {"aws_access_key_id": "x", "aws_secret_access_key": "x"}
    kinds = ("waiters-2", "paginators-1", "endpoint-rule-set-1")
    slim: dict[tuple[str, str], object] = {}
    for service in sorted(service_models.OPERATIONS):
        for region in regions:
            client = slim_session.create_client(service, region_name=region, **credentials)
            slim[service, region] = client.meta
        for kind in kinds:
            slim[service, kind] = _data(slim_loader, service, kind)
    # Every file the slim clients read is in the tree, and botocore's list of services is not
    # read (only the directories of these services, for their API versions: the tree's key).
    assert reads and all(Path(p).is_relative_to(tmp_path) for p in reads), reads
    botocore_data = Path(botocore.__file__).parent / "data"
    assert str(botocore_data) not in listed
    assert {Path(p).name for p in listed if Path(p).parent == botocore_data} <= set(
        service_models.OPERATIONS
    )
    monkeypatch.undo()

    full_session, full_loader = botocore.session.get_session(), Loader()
    for service in sorted(service_models.OPERATIONS):
        for region in regions:
            full = full_session.create_client(service, region_name=region, **credentials).meta
            meta = slim[service, region]
            assert meta.endpoint_url == full.endpoint_url, (service, region)
            assert (meta.partition, meta.region_name) == (full.partition, full.region_name)
        for kind in kinds:
            assert slim[service, kind] == _data(full_loader, service, kind), (service, kind)


def _data(loader, service, kind):
    """A service's `kind` data as a client gets it (with its sdk-extras), or None."""
    try:
        return loader.load_service_model(service, kind)
    except DataNotFoundError:
        return None


def test_a_model_in_the_customer_directory_keeps_botocores_other_files(tmp_path, monkeypatch):
    """~/.aws/models may hold a service's model alone (a preview API): the tree takes that model
    and still gets the service's endpoint rules and waiters from botocore, as botocore would."""
    for key in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(key)
    version = Loader().determine_latest_version("ec2", "service-2")
    model = Loader().load_service_model("ec2", "service-2")
    model["metadata"]["serviceFullName"] = "EC2 from the customer directory"
    customer = tmp_path / "models"
    (customer / "ec2" / version).mkdir(parents=True)
    (customer / "ec2" / version / "service-2.json").write_text(json.dumps(model))
    monkeypatch.setattr(Loader, "CUSTOMER_DATA_PATH", str(customer))

    clients = AwsClients(model_cache=tmp_path / "cache")
    ec2 = clients.ec2("eu-central-1")
    assert ec2.meta.service_model.metadata["serviceFullName"] == "EC2 from the customer directory"
    assert ec2.meta.endpoint_url == "https://ec2.eu-central-1.amazonaws.com"
    assert ec2.get_waiter("image_available").config.operation == "DescribeImages"
