"""The hvac side of the sealbox <-> Vault interop test (driven by tests/interop_python.rs).

    python interop_python.py ADDRESS TOKEN write PREFIX  # hvac writes versions and stages
    python interop_python.py ADDRESS TOKEN read PREFIX   # hvac reads what sealbox wrote

PREFIX is the sealbox store prefix inside the `secret/` KV v2 mount. Prints one JSON object on
stdout. Values are test data made up for this run.
"""

import base64
import json
import sys

import hvac


def write(c, prefix):
    """A secret of fields (as the Vault CLI writes), two versions, staged the way sealbox
    stages (custom metadata) with a check-and-set write; and a text value by sealbox's habit."""
    kv = c.secrets.kv.v2
    db = f"{prefix}/database"
    v1 = kv.create_or_update_secret(
        path=db, secret={"username": "predis", "password": "py-old"}, cas=0
    )["data"]["version"]
    v2 = kv.create_or_update_secret(
        path=db, secret={"username": "predis", "password": "py-new"}, cas=v1
    )["data"]["version"]
    try:
        kv.create_or_update_secret(path=db, secret={"password": "stale"}, cas=v1)
        stale = "accepted"
    except hvac.exceptions.InvalidRequest as e:
        stale = "check-and-set" if "check-and-set" in str(e) else str(e)
    kv.update_metadata(
        path=db,
        custom_metadata={
            "sealbox-stage-current": str(v2),
            "sealbox-stage-previous": str(v1),
            "team": "platform",
        },
    )
    token = f"{prefix}/token"
    t = kv.create_or_update_secret(path=token, secret={"value": "tok-123"})["data"]["version"]
    blob = f"{prefix}/blob"
    b = kv.create_or_update_secret(
        path=blob, secret={"value_base64": base64.b64encode(bytes([0, 1, 254, 255])).decode()}
    )["data"]["version"]
    return {"database": {"v1": v1, "v2": v2}, "stale": stale, "token": t, "blob": b}


def read(c, prefix):
    kv = c.secrets.kv.v2
    out = {}
    name = f"{prefix}/written"
    meta = kv.read_secret_metadata(path=name)["data"]
    custom = meta["custom_metadata"] or {}
    out["custom"] = custom
    out["current_version"] = meta["current_version"]
    for stage in ("current", "previous", "pending"):
        v = int(custom[f"sealbox-stage-{stage}"])
        data = kv.read_secret_version(path=name, version=v, raise_on_deleted_version=True)["data"]
        out[stage] = {"version": v, "value": data["data"]["value"]}
    binary = kv.read_secret_version(path=f"{prefix}/written-binary", raise_on_deleted_version=True)
    out["binary"] = list(base64.b64decode(binary["data"]["data"]["value_base64"]))
    out["keys"] = sorted(kv.list_secrets(path=prefix)["data"]["keys"])
    return out


def main():
    address, token, action, prefix = sys.argv[1:5]
    c = hvac.Client(url=address, token=token)
    assert c.is_authenticated()
    result = write(c, prefix) if action == "write" else read(c, prefix)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
