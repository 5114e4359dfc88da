#!/usr/bin/env python3
"""Writes keel's table of the built-in kinds' wire schema (types/src/schema/table.txt).

Reads the Kubernetes API definitions of one release: the `generated.proto` files (message and
field names, field numbers and types, list merge keys and list types from the `+` markers)
and the Go types beside them (whether a field is a pointer, whether its JSON form omits the
zero value). Run by hand when the served Kubernetes version changes (the same release tag of
each repository):

    scripts/gen-schema-table.py <k8s.io/api checkout> <k8s.io/apimachinery checkout> \
        <k8s.io/kube-aggregator checkout> <k8s.io/apiextensions-apiserver checkout> \
        > types/src/schema/table.txt

Output, one block per message:
    message <full proto name>
    <number> <json name> <type> <one|rep|map> [inline] [ptr] [omit] [mk=<merge key>] [ps=<strategy>]
        [lt=<list type>] [lk=<list map keys, comma-separated>]
For maps the type is `<key type>:<value type>`. An `inline` field's own fields are the JSON
object's (Go embeds the struct; the wire keeps it as one field).
"""

import os
import re
import sys

API_GROUPS = [
    "core/v1", "apps/v1", "batch/v1", "coordination/v1", "rbac/v1", "networking/v1",
    "discovery/v1", "authentication/v1", "authorization/v1", "autoscaling/v1", "policy/v1",
    "events/v1", "scheduling/v1", "autoscaling/v2", "storage/v1", "admissionregistration/v1",
]
AGGREGATOR = ["pkg/apis/apiregistration/v1"]
APIEXTENSIONS = ["pkg/apis/apiextensions/v1"]
MACHINERY = ["pkg/apis/meta/v1", "pkg/api/resource", "pkg/util/intstr", "pkg/runtime"]

FIELD = re.compile(
    r"^\s*(optional|repeated|required)?\s*(map<\s*([\w.]+)\s*,\s*([\w.]+)\s*>|[\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;"
)
SCALARS = {"string", "int32", "int64", "bool", "double", "float", "bytes", "uint32", "uint64"}


def qualify(name, package, known):
    if name in SCALARS:
        return name
    if name.startswith("."):
        return name[1:]
    if f"{package}.{name}" in known:
        return f"{package}.{name}"
    return name


def read_proto(path):
    package = None
    messages = []
    current = None
    markers = {}
    depth = 0
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if line.startswith("package "):
                package = line.split()[1].rstrip(";")
            elif line.startswith("message ") and depth == 0:
                current = (line.split()[1], [])
                messages.append(current)
                depth = 1
                markers = {}
            elif current and depth == 1 and line == "}":
                depth = 0
                current = None
            elif current and line.startswith("//"):
                m = re.match(r"//\s*\+(patchMergeKey|patchStrategy|listType|listMapKey)=(\S+)", line)
                if m:
                    if m.group(1) == "listMapKey":
                        markers.setdefault("listMapKey", []).append(m.group(2))
                    else:
                        markers[m.group(1)] = m.group(2)
            elif current:
                m = FIELD.match(line)
                if m:
                    label, typ, mkey, mval, name, number = m.groups()
                    current[1].append((label, typ, mkey, mval, name, int(number), markers))
                markers = {}
    return package, messages


# `Name Type `tags`` or, for an embedded struct, `Type `tags``.
GO_FIELD = re.compile(r'^\s*(?:\w+\s+)?(\S+)\s+`([^`]*)`')


def read_go(directory):
    """(struct, proto field number) -> (pointer, omitempty, inline, JSON name) from the Go types."""
    out = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".go") or name.endswith("_test.go") or name.startswith("zz_"):
            continue
        struct = None
        with open(os.path.join(directory, name)) as f:
            for line in f:
                m = re.match(r"^type (\w+) struct \{", line)
                if m:
                    struct = m.group(1)
                    continue
                if line.startswith("}"):
                    struct = None
                    continue
                if not struct:
                    continue
                m = GO_FIELD.match(line)
                if not m:
                    continue
                gotype, tag = m.groups()
                p = re.search(r'protobuf:"[^"]*?,(\d+),', tag)
                j = re.search(r'json:"([^"]*)"', tag)
                if not p:
                    continue
                omit = bool(j and "omitempty" in j.group(1))
                inline = bool(j and j.group(1).startswith(",") and "inline" in j.group(1))
                json_name = j.group(1).split(",")[0] if j else ""
                out[(struct, int(p.group(1)))] = (gotype.startswith("*"), omit, inline, json_name)
    return out


def main():
    api, machinery, aggregator, apiextensions = sys.argv[1:5]
    dirs = (
        [os.path.join(api, g) for g in API_GROUPS]
        + [os.path.join(machinery, d) for d in MACHINERY]
        + [os.path.join(aggregator, d) for d in AGGREGATOR]
        + [os.path.join(apiextensions, d) for d in APIEXTENSIONS]
    )
    parsed = []
    known = set()
    for d in dirs:
        package, messages = read_proto(os.path.join(d, "generated.proto"))
        for name, _ in messages:
            known.add(f"{package}.{name}")
        parsed.append((d, package, messages))
    for d, package, messages in parsed:
        go = read_go(d)
        for name, fields in messages:
            print(f"message {package}.{name}")
            for label, typ, mkey, mval, fname, number, markers in fields:
                if mkey:
                    card = "map"
                    t = f"{qualify(mkey, package, known)}:{qualify(mval, package, known)}"
                else:
                    card = "rep" if label == "repeated" else "one"
                    t = qualify(typ, package, known)
                flags = []
                pointer, omit, inline, json_name = go.get((name, number), (False, True, False, ""))
                # The JSON name is the Go tag's; the proto name differs for initialisms
                # (proto `uID`, JSON `uid`).
                if json_name and json_name != "-":
                    fname = json_name
                if inline:
                    flags.append("inline")
                if pointer:
                    flags.append("ptr")
                if omit:
                    flags.append("omit")
                if "patchMergeKey" in markers:
                    flags.append(f"mk={markers['patchMergeKey']}")
                if "patchStrategy" in markers:
                    flags.append(f"ps={markers['patchStrategy']}")
                if "listType" in markers:
                    flags.append(f"lt={markers['listType']}")
                if "listMapKey" in markers:
                    flags.append(f"lk={','.join(markers['listMapKey'])}")
                print(" ".join([str(number), fname, t, card] + flags))


if __name__ == "__main__":
    main()
