"""The check built once per schema says yes exactly where the path-aware walk finds nothing.

``encode`` trusts :func:`compile_fits` for every record and asks :func:`find_problem` only
for the message, so the two must agree on every record: the bundled contracts' records with
random damage at random places, and a hand-written schema with every node kind (a record that
refers to itself, a map, a fixed, an enum, unions, logical types, against arbitrary data.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.contracts import (
    ContractEncodingError,
    ContractSchemaError,
    default_registry,
    encode,
)
from processors.contracts._avro import parse
from processors.contracts._validation import compile_fits, find_problem
from tests.unit.contracts.records import MINIMAL, POPULATED

REGISTRY = default_registry()
LATEST = [REGISTRY.latest(family) for family in REGISTRY.families()]

junk: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=20)
    | st.sampled_from(["cmp-1", "company", "person", "1.0", "BOOKMARKED"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner)
        | st.dictionaries(st.text(max_size=6) | st.integers(0, 3), inner, max_size=3)
    ),
    max_leaves=8,
)


def _places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside ``value`` a damage can land (dict keys and list indexes)."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _places(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _places(item, (*path, index))
    return found


def _damage(record: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    damaged = copy.deepcopy(record)
    for _ in range(data.draw(st.integers(1, 3))):
        place = data.draw(st.sampled_from(_places(damaged)))
        if not place:
            continue
        *outer, last = place
        parent: Any = damaged
        for step in outer:
            parent = parent[step]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[last] = data.draw(junk)
        elif action == "delete" and isinstance(parent, dict):
            del parent[last]
        elif isinstance(parent, dict):
            parent[data.draw(st.text(min_size=1, max_size=8))] = data.draw(junk)
    return damaged


@settings(max_examples=400)
@given(st.sampled_from(LATEST), st.booleans(), st.data())
def test_bundled_contracts_agree_on_damaged_records(
    schema: Any, populated: bool, data: st.DataObject
) -> None:
    record = dict((POPULATED if populated else MINIMAL)[schema.family])
    damaged = _damage(record, data)
    fits = compile_fits(schema.parsed)
    assert fits(damaged) is (find_problem(schema.parsed, damaged) is None)


@pytest.mark.parametrize("schema", LATEST, ids=lambda schema: schema.label)
def test_the_example_records_fit(schema: Any) -> None:
    fits = compile_fits(schema.parsed)
    assert fits(POPULATED[schema.family])
    assert fits(MINIMAL[schema.family])
    assert not fits({**MINIMAL[schema.family], "not_a_field": 1})


EVERY_KIND = parse(
    {
        "type": "record",
        "name": "Node",
        "namespace": "test.kinds",
        "fields": [
            {"name": "label", "type": "string"},
            {"name": "count", "type": "int"},
            {"name": "total", "type": "long", "default": 0},
            {"name": "ratio", "type": ["null", "double"], "default": None},
            {"name": "share", "type": "float", "default": 0.0},
            {"name": "flag", "type": "boolean", "default": False},
            {"name": "blob", "type": ["null", "bytes"], "default": None},
            {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["ON", "OFF"]}},
            {"name": "again", "type": ["null", "State"], "default": None},
            {"name": "tag", "type": {"type": "fixed", "name": "Tag", "size": 2}},
            {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
            {"name": "scores", "type": {"type": "map", "values": "long"}, "default": {}},
            {"name": "children", "type": {"type": "array", "items": "Node"}, "default": []},
            {"name": "parent", "type": ["null", "Node"], "default": None},
            {
                "name": "when",
                "type": {"type": "long", "logicalType": "timestamp-millis"},
                "default": 0,
            },
            {"name": "either", "type": ["string", "long", "null"], "default": "x"},
        ],
    }
)

kinds_data: st.SearchStrategy[Any] = st.fixed_dictionaries(
    {
        "label": st.text(max_size=4) | junk,
        "count": st.integers(-(2**32), 2**32) | junk,
        "state": st.sampled_from(["ON", "OFF", "on"]) | junk,
        "tag": st.binary(min_size=1, max_size=3) | junk,
    },
    optional={
        "total": st.integers(-(2**64), 2**64) | junk,
        "ratio": st.none() | st.floats() | junk,
        "share": st.floats() | st.integers() | st.booleans(),
        "flag": st.booleans() | junk,
        "blob": st.none() | st.binary(max_size=3) | junk,
        "again": st.none() | st.sampled_from(["ON", "OFF", "X"]),
        "tags": st.lists(st.text(max_size=3), max_size=3) | st.text(max_size=3) | junk,
        "scores": st.dictionaries(
            st.text(max_size=3) | st.integers(0, 2), st.integers(), max_size=2
        )
        | junk,
        "children": st.lists(junk, max_size=2),
        "parent": st.none() | junk,
        "when": junk,
        "either": junk,
        "extra": junk,
    },
)


@settings(max_examples=600)
@given(kinds_data)
def test_every_node_kind_agrees_on_arbitrary_data(datum: Any) -> None:
    fits = compile_fits(EVERY_KIND)
    assert fits(datum) is (find_problem(EVERY_KIND, datum) is None)


def test_a_record_that_refers_to_itself_is_checked_at_every_depth() -> None:
    fits = compile_fits(EVERY_KIND)
    leaf = {"label": "leaf", "count": 1, "state": "ON", "tag": b"ab"}
    child: dict[str, Any] = {**leaf, "parent": {**leaf}}
    tree: dict[str, Any] = {**leaf, "children": [child], "scores": {"a": 1}}
    assert fits(tree)
    broken = copy.deepcopy(tree)
    broken["children"][0]["parent"]["count"] = 2**40
    assert not fits(broken)
    assert find_problem(EVERY_KIND, broken) is not None


def test_a_node_no_parsed_schema_has_is_refused_when_built() -> None:
    schema = {
        "type": "record",
        "name": "Wrapped",
        "fields": [{"name": "inner", "type": {"type": ["null", "string"]}}],
    }
    with pytest.raises(ContractSchemaError, match="not a node of a parsed schema"):
        compile_fits(schema, named={})


def test_encode_still_names_the_field_of_a_refused_record() -> None:
    schema = LATEST[0]
    record = {**MINIMAL[schema.family], "entity_version": True}
    with pytest.raises(ContractEncodingError) as refused:
        encode(schema, record)
    assert refused.value.field == "entity_version"
