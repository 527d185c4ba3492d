"""boto3 side of the sealbox <-> boto3 interop test (driven by tests/interop_boto3.rs).

    python interop_boto3.py ENDPOINT write PREFIX   # boto3 creates and rotates secrets
    python interop_boto3.py ENDPOINT read PREFIX    # boto3 reads what sealbox wrote

Prints one JSON object on stdout. Values are test data made up for this run.
"""

import json
import sys

import boto3


def client(endpoint):
    return boto3.client(
        "secretsmanager",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def write(c, prefix):
    """A rotation done the way AWS rotation functions do it: new version AWSPENDING, then the
    AWSCURRENT label moved onto it (AWS moves AWSPREVIOUS to the old one)."""
    db = f"{prefix}/database"
    first = {"username": "predis", "password": "boto-old", "host": "db.internal", "port": 5432}
    v1 = c.create_secret(Name=db, SecretString=json.dumps(first))["VersionId"]
    second = dict(first, password="boto-new")
    v2 = c.put_secret_value(
        SecretId=db, SecretString=json.dumps(second), VersionStages=["AWSPENDING"]
    )["VersionId"]
    c.update_secret_version_stage(
        SecretId=db, VersionStage="AWSCURRENT", MoveToVersionId=v2, RemoveFromVersionId=v1
    )
    c.update_secret_version_stage(SecretId=db, VersionStage="AWSPENDING", RemoveFromVersionId=v2)
    blob = f"{prefix}/blob"
    vb = c.create_secret(Name=blob, SecretBinary=bytes([0, 1, 2, 254, 255]))["VersionId"]
    return {"database": {"v1": v1, "v2": v2}, "blob": {"v": vb}}


def read(c, prefix):
    """Everything sealbox wrote, by stage, as boto3 sees it."""
    out = {}
    name = f"{prefix}/written"
    for stage in ("AWSCURRENT", "AWSPREVIOUS", "AWSPENDING"):
        r = c.get_secret_value(SecretId=name, VersionStage=stage)
        out[stage] = {"version": r["VersionId"], "value": r.get("SecretString")}
    r = c.get_secret_value(SecretId=f"{prefix}/written-binary", VersionStage="AWSCURRENT")
    out["binary"] = list(r["SecretBinary"])
    out["stages"] = c.describe_secret(SecretId=name)["VersionIdsToStages"]
    return out


def main():
    endpoint, action, prefix = sys.argv[1:4]
    c = client(endpoint)
    result = write(c, prefix) if action == "write" else read(c, prefix)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
