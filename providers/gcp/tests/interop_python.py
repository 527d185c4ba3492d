"""Google's official Python client side of the sealbox <-> GCP interop test
(driven by tests/interop_python.rs), over the REST transport with anonymous credentials.

    python interop_python.py ENDPOINT PROJECT write ID_PREFIX  # Python writes and stages versions
    python interop_python.py ENDPOINT PROJECT read ID_PREFIX   # Python reads what sealbox wrote

ID_PREFIX is the GCP secret id of the sealbox prefix (sealbox maps '/' to '__'). Prints one
JSON object on stdout. Values are test data made up for this run.
"""

import json
import sys

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager
from google.protobuf import field_mask_pb2
import google_crc32c


def client(endpoint):
    return secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=endpoint),
    )


def number(version_name):
    return version_name.rsplit("/", 1)[1]


def add(c, parent, data):
    crc = google_crc32c.value(data)
    v = c.add_secret_version(
        request={"parent": parent, "payload": {"data": data, "data_crc32c": crc}}
    )
    return number(v.name)


def write(c, project, prefix):
    """A rotation done with aliases: v1 current, v2 added as pending, then promoted (current
    -> v2, previous -> v1, pending removed), each alias update conditional on the etag."""
    parent = f"projects/{project}"
    db = c.create_secret(
        request={
            "parent": parent,
            "secret_id": f"{prefix}__database",
            "secret": {"replication": {"automatic": {}}, "labels": {"team": "platform"}},
        }
    )
    first = {"username": "predis", "password": "py-old", "host": "db.internal", "port": 5432}
    v1 = add(c, db.name, json.dumps(first).encode())
    s = c.get_secret(request={"name": db.name})
    s.version_aliases["current"] = int(v1)
    c.update_secret(
        request={"secret": s, "update_mask": field_mask_pb2.FieldMask(paths=["version_aliases"])}
    )
    second = dict(first, password="py-new")
    v2 = add(c, db.name, json.dumps(second).encode())
    s = c.get_secret(request={"name": db.name})
    s.version_aliases["pending"] = int(v2)
    c.update_secret(
        request={"secret": s, "update_mask": field_mask_pb2.FieldMask(paths=["version_aliases"])}
    )
    s = c.get_secret(request={"name": db.name})
    s.version_aliases["current"] = int(v2)
    s.version_aliases["previous"] = int(v1)
    del s.version_aliases["pending"]
    c.update_secret(
        request={"secret": s, "update_mask": field_mask_pb2.FieldMask(paths=["version_aliases"])}
    )
    # A stale etag is refused (FAILED_PRECONDITION), as the real service does.
    stale = secretmanager.Secret(name=db.name, etag=s.etag, labels={"team": "other"})
    refused = None
    try:
        c.update_secret(
            request={"secret": stale, "update_mask": field_mask_pb2.FieldMask(paths=["labels"])}
        )
    except Exception as e:  # google.api_core.exceptions.BadRequest (HTTP 400)
        refused = e.response.json()["error"]["status"]
    # A secret with no aliases at all, the way most tools write: sealbox reads latest as CURRENT.
    blob = c.create_secret(
        request={
            "parent": parent,
            "secret_id": f"{prefix}__blob",
            "secret": {"replication": {"user_managed": {"replicas": [{"location": "europe-west1"}]}}},
        }
    )
    add(c, blob.name, b"ignored")
    vb = add(c, blob.name, bytes([0, 1, 2, 254, 255]))
    # A disabled version: sealbox must not read it.
    vd = add(c, blob.name, b"disabled value")
    c.disable_secret_version(request={"name": f"{blob.name}/versions/{vd}"})
    return {
        "database": {"v1": v1, "v2": v2},
        "blob": {"v": vb, "disabled": vd},
        "stale_etag": refused,
    }


def read(c, project, prefix):
    """Everything sealbox wrote, by alias, as the official client sees it."""
    out = {}
    name = f"projects/{project}/secrets/{prefix}__written"
    for alias in ("current", "previous", "pending"):
        r = c.access_secret_version(request={"name": f"{name}/versions/{alias}"})
        assert r.payload.data_crc32c == google_crc32c.value(r.payload.data), alias
        out[alias] = {"version": number(r.name), "value": r.payload.data.decode()}
    r = c.access_secret_version(
        request={"name": f"projects/{project}/secrets/{prefix}__written-binary/versions/current"}
    )
    out["binary"] = list(r.payload.data)
    s = c.get_secret(request={"name": name})
    out["aliases"] = {k: str(v) for k, v in s.version_aliases.items()}
    out["labels"] = dict(s.labels)
    out["annotations"] = dict(s.annotations)
    out["replication"] = type(s.replication).pb(s.replication).WhichOneof("replication")
    versions = c.list_secret_versions(request={"parent": name, "page_size": 1})
    out["versions"] = [number(v.name) for v in versions]
    secrets = c.list_secrets(request={"parent": f"projects/{project}", "page_size": 1})
    out["ids"] = sorted(s.name.rsplit("/", 1)[1] for s in secrets)
    return out


def main():
    endpoint, project, action, prefix = sys.argv[1:5]
    c = client(endpoint)
    result = write(c, project, prefix) if action == "write" else read(c, project, prefix)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
