"""Source filters: the `source_ami_filter` blocks and `data "amazon-ami"` sources that choose a
root's upstream image, read from its template (files.py, reads.py) and their values
evaluated as Packer would (evaluate.py, jsontemplate.py) with the template's variables
(variables.py): its defaults, var files and the catalog's `variables`. What cannot be known
before the build is refused, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bridge.catalog import Definition
from bridge.errors import FingerprintError
from bridge.git import TreeIndex
from bridge.sources import SourceFilter, filter_from
from bridge.templates import hcl
from bridge.templates.blocks import selected_origin
from bridge.templates.evaluate import HclScope
from bridge.templates.files import hcl2_documents, json_template
from bridge.templates.functions import to_string
from bridge.templates.jsontemplate import JsonScope
from bridge.templates.layers import Layer
from bridge.templates.unknowable import Unknowable
from bridge.templates.variables import hcl2_layers, json_layers


def source_filters(root: TreeIndex, d: Definition, commit: str) -> list[SourceFilter]:
    """The filters that choose `d`'s upstream image (sources.py): the catalog's `source`, and
    the template's amazon builders' `source_ami_filter` and `data "amazon-ami"` blocks, their
    values evaluated as Packer would (evaluate.py). A builder whose `source_ami` has a value is
    built on that image; its filter only checks it. With `only`, the other builds' builders and
    sources are not: Packer never builds them for this definition."""
    found = [] if d.source is None else [d.source]
    if d.template_format == "json":
        return found + _json_filters(root, d, commit)
    return found + _hcl2_filters(root, d, commit)


def fixed_source_amis(root: TreeIndex, d: Definition, commit: str) -> tuple[str, ...]:
    """The upstream images `d`'s selected amazon builders or sources name outright: a
    `source_ami` whose value (evaluated as Packer would) is an AMI ID, for the provenance of a
    root that tracks no filter. A value only the build can know is left out."""
    found: set[str] = set()
    selected = selected_origin(root, d, commit)
    if d.template_format == "json":
        template = json_template(root, d, commit)
        builders = template.get("builders") if isinstance(template, dict) else None
        declared = template.get("variables") if isinstance(template, dict) else None
        variables = declared if isinstance(declared, dict) else {}
        scope = JsonScope(list(variables), json_layers(root, d, commit, variables))
        for builder in builders if isinstance(builders, list) else []:
            if not isinstance(builder, dict) or not str(builder.get("type", "")).startswith(
                "amazon-"
            ):
                continue
            if selected not in (None, str(builder.get("name") or builder.get("type", ""))):
                continue
            value = builder.get("source_ami")
            if isinstance(value, str):
                found.add(_known(scope.render, value))
    else:
        documents = hcl2_documents(root, d, commit)
        layers = hcl2_layers(root, d, commit, documents)
        hcl_scope = HclScope(documents, layers, template_dir=d.directory)
        for doc in documents:
            for block in hcl.blocks(doc.body, "source"):
                labels = hcl.block_labels(block)
                if len(labels) != 2 or not labels[0].startswith("amazon-"):
                    continue
                if selected not in (None, f"{labels[0]}.{labels[1]}"):
                    continue
                attribute = hcl.attributes(hcl.block_body(block)).get("source_ami")
                if attribute is not None:
                    found.add(_known(hcl_scope.evaluate, doc, hcl.value_of(attribute)))
    return tuple(sorted(a for a in found if a.startswith("ami-")))


def _known(evaluate: Callable[..., Any], *args: Any) -> str:
    """A value as a string, or "" when only the build can know it."""
    try:
        value = evaluate(*args)
    except Unknowable:
        return ""
    return value if isinstance(value, str) else ""


def _json_filters(root: TreeIndex, d: Definition, commit: str) -> list[SourceFilter]:
    template = json_template(root, d, commit)
    builders = template.get("builders") if isinstance(template, dict) else None
    declared = template.get("variables") if isinstance(template, dict) else None
    variables = declared if isinstance(declared, dict) else {}
    scope = JsonScope(list(variables), json_layers(root, d, commit, variables))
    found = []
    selected = selected_origin(root, d, commit)
    for index, builder in enumerate(builders if isinstance(builders, list) else []):
        if not isinstance(builder, dict) or "source_ami_filter" not in builder:
            continue
        if selected not in (None, str(builder.get("name") or builder.get("type", ""))):
            continue  # another build's (`only` selects one): Packer never uses it for this one
        if not str(builder.get("type", "")).startswith("amazon-"):
            continue
        where = f"Builder {index} of {d.template} (definition {d.name!r})"
        source_ami = builder.get("source_ami")
        with _knowable(where, "source_ami"):
            if source_ami and (not isinstance(source_ami, str) or _given(scope.render, source_ami)):
                continue
        spec = builder["source_ami_filter"]
        found.append(
            filter_from(
                where,
                _json_spec(scope, spec, where) if isinstance(spec, dict) else {},
                origin=f"builder {index}",
                kind="json-builder",
                file=d.template,
                index=index,
            )
        )
    return found


def _json_spec(scope: JsonScope, spec: dict[str, Any], where: str) -> dict[str, Any]:
    """A JSON builder's filter with its strings rendered (values of other types kept)."""

    def render(value: Any, field: str) -> Any:
        if not isinstance(value, str):
            return value
        with _knowable(where, field):
            return scope.render(value)

    filters, owners = spec.get("filters"), spec.get("owners")
    most_recent = render(spec.get("most_recent", False), "most_recent")
    return {
        "filters": {render(k, "filters"): render(v, f"filters.{k}") for k, v in filters.items()}
        if isinstance(filters, dict)
        else filters,
        "owners": [render(o, f"owners[{i}]") for i, o in enumerate(owners)]
        if isinstance(owners, list)
        else _string_list(render(owners, "owners"))
        if isinstance(owners, str)
        else owners,
        # Packer decodes a string as Go's strconv.ParseBool does (and "" as false).
        "most_recent": most_recent in ("1", "t", "T", "true", "TRUE", "True")
        if isinstance(most_recent, str)
        else most_recent,
    }


def _given(evaluate: Callable[..., Any], *args: Any) -> Any:
    """A `source_ami`'s value, `evaluate(*args)`; the bridge's `ami_base` (a parent's AMI, or
    the catalog's `source` image) stands for the AMI it always passes."""
    try:
        return evaluate(*args)
    except Unknowable as exc:
        if exc.kind == "build" and exc.expression == "ami_base":
            return "ami_base"
        raise


def _string_list(text: str) -> list[str]:
    """A string where Packer takes a list: it decodes it split at commas ("" is no item)."""
    return text.split(",") if text else []


def _hcl2_filters(root: TreeIndex, d: Definition, commit: str) -> list[SourceFilter]:
    documents = hcl2_documents(root, d, commit)
    layers: list[Layer] = []

    def scope(data: Callable[[list[str]], object] | None = None) -> HclScope:
        if not layers:  # read the var files only for a template that has a filter
            layers.extend(hcl2_layers(root, d, commit, documents))
        return HclScope(documents, layers, template_dir=d.directory, data=data)

    found = []
    selected = selected_origin(root, d, commit)
    for doc in documents:
        for kind, prefix in (("hcl2-source", "source"), ("hcl2-data", "data")):
            for block in hcl.blocks(doc.body, prefix):
                labels = hcl.block_labels(block)
                wanted = (
                    labels[:1] == ["amazon-ami"]
                    if prefix == "data"
                    else (labels[:1] != [] and labels[0].startswith("amazon-"))
                )
                if len(labels) != 2 or not wanted:
                    continue
                if prefix == "source" and selected not in (None, f"{labels[0]}.{labels[1]}"):
                    continue  # another build's source (`only` selects one): never used here
                origin = f"{prefix}.{labels[0]}.{labels[1]}"
                where = f"{origin} in {doc.path} (definition {d.name!r})"
                body = hcl.block_body(block)
                if prefix == "source":
                    # For `source_ami`: a `data "amazon-ami"` ID has a value (or Packer fails).
                    spec = _hcl2_source_filter(doc, body, where, lambda: scope(_ami_id))
                    if spec is None:
                        continue
                    body = spec
                found.append(
                    filter_from(
                        where,
                        _hcl_spec(scope(), doc, body, where),
                        origin=origin,
                        kind=kind,  # type: ignore[arg-type]
                        file=doc.path,
                    )
                )
    return found


def _hcl2_source_filter(
    doc: hcl.Document, body: hcl.Node, where: str, scope: Callable[[], HclScope]
) -> hcl.Node | None:
    """The `source_ami_filter` block of an amazon source that Packer chooses its image with:
    None without one, or when `source_ami` has a value (a `data "amazon-ami"` ID has one)."""
    specs = list(hcl.blocks(body, "source_ami_filter"))
    source_ami = hcl.attributes(body).get("source_ami")
    if not specs:
        return None
    if source_ami is not None:
        with _knowable(where, "source_ami"):
            value = _given(scope().evaluate, doc, hcl.value_of(source_ami))
            if value is not None and to_string(value, "source_ami"):
                return None
    return hcl.block_body(specs[0])


def _hcl_spec(scope: HclScope, doc: hcl.Document, body: hcl.Node, where: str) -> dict[str, Any]:
    """A filter block's `filters`, `owners` and `most_recent`, evaluated (Packer's types:
    strings in a map and a list, and a bool)."""
    spec: dict[str, Any] = {}
    for field, attribute in hcl.attributes(body).items():
        if field not in ("filters", "owners", "most_recent"):
            continue
        with _knowable(where, field):
            value = scope.evaluate(doc, hcl.value_of(attribute))
            if field == "filters" and isinstance(value, dict):
                value = {k: to_string(v, f"filters.{k}") for k, v in value.items()}
            elif field == "owners" and isinstance(value, list):
                value = [to_string(v, f"owners[{i}]") for i, v in enumerate(value)]
            elif field == "most_recent" and value in ("true", "false"):
                value = value == "true"
        spec[field] = value
    return spec


def _ami_id(names: list[str]) -> object:
    """A stand-in for a `data "amazon-ami"` block's ID (any other data source is unknowable)."""
    if names[1] == "amazon-ami" and names[3:] == ["id"]:
        return ".".join(names)
    raise Unknowable(".".join(names), "data source")


@contextmanager
def _knowable(where: str, field: str) -> Iterator[None]:
    """Unknowable values of a filter's `field` as a FingerprintError that says why and what
    to do."""
    try:
        yield
    except Unknowable as exc:
        raise FingerprintError(
            f"{where} chooses its upstream image with `{field}{exc.path}` depending on "
            f"{exc.reason}, so the bridge cannot know before the build which image Packer "
            f"would build on. {exc.fix}"
        ) from None
    except hcl.HclSyntaxError as exc:
        raise FingerprintError(
            f"{where}: a value of `{field}` cannot be parsed ({exc}). Check the template with "
            "`packer validate`."
        ) from None
