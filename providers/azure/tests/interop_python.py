"""Interop with Microsoft's official Python clients (azure-keyvault-secrets, azure-identity)
against the local Key Vault, for providers/azure/tests/interop_python.rs.

usage: interop_python.py ACTION   with a JSON object on stdin:
  vault_url, authority_host, tenant, client_id, client_secret, ca_file, prefix

ACTION write: writes versions under PREFIX for sealbox to read; prints their ids.
ACTION read:  reads what sealbox wrote under PREFIX; prints what it found.
Prints one JSON object on stdout.
"""

import base64
import json
import sys

from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

SEALBOX_BASE64 = "application/vnd.sealbox.base64"


def client(cfg):
    credential = ClientSecretCredential(
        cfg["tenant"],
        cfg["client_id"],
        cfg["client_secret"],
        authority=cfg["authority_host"],
        disable_instance_discovery=True,
        connection_verify=cfg["ca_file"],
    )
    return SecretClient(
        cfg["vault_url"],
        credential,
        verify_challenge_resource=False,
        connection_verify=cfg["ca_file"],
    )


def kv_name(prefix, name):
    # sealbox's encoding for the characters these tests use: '/' is '--'.
    return (prefix + "/" + name).replace("/", "--")


def write(c, prefix):
    db = kv_name(prefix, "database")
    v1 = c.set_secret(db, json.dumps({"password": "py-old"}), tags={"team": "platform"})
    v2 = c.set_secret(db, json.dumps({"password": "py-new"}), tags={"team": "platform"})
    blob = kv_name(prefix, "blob")
    b = c.set_secret(
        blob,
        base64.b64encode(bytes([0, 1, 2, 254, 255])).decode(),
        content_type=SEALBOX_BASE64,
    )
    off = c.set_secret(blob + "--off", "not served")
    c.update_secret_properties(blob + "--off", off.properties.version, enabled=False)
    return {
        "database": {"v1": v1.properties.version, "v2": v2.properties.version},
        "blob": b.properties.version,
        "disabled": off.properties.version,
    }


def read(c, prefix):
    token = kv_name(prefix, "token")
    out = {"latest": c.get_secret(token).value, "by_stage": {}}
    for props in c.list_properties_of_secret_versions(token):
        stages = (props.tags or {}).get("sealbox-stage", "")
        for stage in filter(None, stages.split(",")):
            out["by_stage"][stage] = c.get_secret(token, props.version).value
        if (props.tags or {}).get("sealbox-name") != prefix + "/token":
            out["bad_name_tag"] = props.tags
    blob = c.get_secret(kv_name(prefix, "blob"))
    out["blob_content_type"] = blob.properties.content_type
    out["blob_hex"] = base64.b64decode(blob.value).hex()
    out["names"] = sorted(p.name for p in c.list_properties_of_secrets())
    return out


def main():
    action = sys.argv[1]
    cfg = json.load(sys.stdin)
    c = client(cfg)
    result = write(c, cfg["prefix"]) if action == "write" else read(c, cfg["prefix"])
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
