"""Our ``inference.proto`` against what standard V2 clients send: every message of the six RPCs we serve (and the
messages nested in them) has the field names, numbers, types and labels of tritonclient's ``grpc_service.proto``.

tritonclient's messages are a superset in places (more parameter types, more RPCs), so ours must be a subset with
identical numbers. tritonclient.grpc is not imported: its module registers the same ``inference.*`` names in
protobuf's default pool as ours, so its descriptor is read from its generated source instead.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from ray_deploy.dataplane.grpc_v2.protocol import pb2

RPCS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")


def _tritonclient_file() -> descriptor_pb2.FileDescriptorProto:
    spec = importlib.util.find_spec("tritonclient")
    assert spec is not None and spec.submodule_search_locations, "tritonclient is a dev dependency"
    source = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "service_pb2.py"
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "AddSerializedFile":
            argument = node.args[0]
            assert isinstance(argument, ast.Constant) and isinstance(argument.value, bytes)
            return descriptor_pb2.FileDescriptorProto.FromString(argument.value)
    raise AssertionError(f"no serialized descriptor in {source}")


def _ours() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    pb2.DESCRIPTOR.CopyToProto(proto)
    return proto


def _messages(
    messages: list[descriptor_pb2.DescriptorProto], prefix: str
) -> Iterator[tuple[str, descriptor_pb2.DescriptorProto]]:
    for message in messages:
        name = f"{prefix}.{message.name}"
        yield name, message
        yield from _messages(list(message.nested_type), name)


def _fields(message: descriptor_pb2.DescriptorProto) -> dict[str, tuple[int, int, int, str, str | None]]:
    oneofs = [o.name for o in message.oneof_decl]
    return {
        f.name: (f.number, f.type, f.label, f.type_name, oneofs[f.oneof_index] if f.HasField("oneof_index") else None)
        for f in message.field
    }


OURS = dict(_messages(list(_ours().message_type), ".inference"))
THEIRS = dict(_messages(list(_tritonclient_file().message_type), ".inference"))


def test_the_package_and_service_are_the_ones_clients_call() -> None:
    ours, theirs = _ours(), _tritonclient_file()
    assert ours.package == theirs.package == "inference"
    assert [s.name for s in ours.service] == ["GRPCInferenceService"]
    their_methods = {m.name: m for m in next(s for s in theirs.service if s.name == "GRPCInferenceService").method}
    ours_methods = {m.name: m for m in ours.service[0].method}
    assert sorted(ours_methods) == sorted(RPCS)
    for name, method in ours_methods.items():
        assert (method.input_type, method.output_type) == (
            their_methods[name].input_type,
            their_methods[name].output_type,
        ), name
        assert not method.client_streaming and not method.server_streaming


def test_every_message_of_the_rpcs_is_covered() -> None:
    used = {m.input_type for m in _ours().service[0].method} | {m.output_type for m in _ours().service[0].method}
    assert used <= set(OURS)
    # the messages reached from the RPCs' messages, nested ones and field types included, are all ours
    reached, todo = set(), list(used)
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        todo += [n for n in OURS if n.startswith(f"{name}.")]
        todo += [t for *_, t, _ in _fields(OURS[name]).values() if t]
    assert reached == set(OURS)
    assert {".inference.InferParameter", ".inference.InferTensorContents"} <= reached


@pytest.mark.parametrize("name", sorted(OURS))
def test_fields_match_tritonclient(name: str) -> None:
    assert name in THEIRS, f"{name} is not a message of the V2 protocol as tritonclient knows it"
    ours, theirs = _fields(OURS[name]), _fields(THEIRS[name])
    for field, signature in ours.items():
        assert field in theirs, f"{name}.{field} is not in tritonclient's {name}"
        assert signature == theirs[field], f"{name}.{field}: ours {signature}, tritonclient's {theirs[field]}"
    assert OURS[name].options.map_entry == THEIRS[name].options.map_entry


def test_the_fields_clients_fill_are_all_there() -> None:
    """The subset is not empty where it matters: what tritonclient sends for infer and reads back."""
    request, response = _fields(OURS[".inference.ModelInferRequest"]), _fields(OURS[".inference.ModelInferResponse"])
    assert set(request) == set(_fields(THEIRS[".inference.ModelInferRequest"]))
    assert set(response) == set(_fields(THEIRS[".inference.ModelInferResponse"]))
    assert set(_fields(OURS[".inference.InferTensorContents"])) == set(
        _fields(THEIRS[".inference.InferTensorContents"])
    )
