import getpass
import json
import os

import boto3


def db_password():
    client = boto3.client("secretsmanager")
    secret = client.get_secret_value(SecretId="billing/prod/db")
    return json.loads(secret["SecretString"])["password"]


password = getpass.getpass("Password: ")
token = os.environ.get("API_TOKEN")
api_key = settings.API_KEY
if not token:
    raise SystemExit("set API_TOKEN")
query = "UPDATE users SET password = %(password)s WHERE id = %(id)s"
secret_name = "billing/prod/database/password"
