#!/usr/bin/env python3
"""Writes the labelled detection corpus of sealbox-scan: scan/tests/corpus/ and its labels,
scan/tests/corpus-labels.toml.

Every credential is a random string (fixed seed) in its provider's published format, planted in
the file shapes where such credentials are found: env files, shell, Python, JavaScript, Go, Java
properties, YAML (Kubernetes, Compose, CI), JSON (.NET, service-account files, notebooks),
Terraform, INI, key files. Each one is labelled with its file, line, byte column, length and the
kind of credential it is (named after the rule meant to find it). Everything else in the corpus
is a hard negative that no rule should report: UUIDs, lockfile hashes, base64 images, public
keys and certificates, commit ids and digests, placeholders and template references, code that
reads secrets, bcrypt hashes, documentation example keys.

Some positives are shapes the rules are known to miss (a password inside a .NET connection
string, a Django key with punctuation, a notebook cell's escaped quotes): the corpus measures the
rules, it is not written to flatter them. Regenerate with `python3 scan/tests/make_corpus.py`
(the output is the same for the same script).
"""

import base64
import os
import random
import shutil
import string

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")
LABELS = os.path.join(HERE, "corpus-labels.toml")

rng = random.Random(32)

UPPER = string.ascii_uppercase
LOWER = string.ascii_lowercase
DIGITS = string.digits
ALNUM = UPPER + LOWER + DIGITS
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"


def r(alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def password(n=None):
    """A generated password: letters and digits, as password managers make them."""
    n = n or rng.randint(12, 20)
    while True:
        p = r(ALNUM, n)
        if any(c.isdigit() for c in p) and any(c.isupper() for c in p):
            return p


def aws_key_id(prefix="AKIA"):
    return prefix + r(UPPER + "234567", 16)


def aws_secret():
    return r(B64, 40)


def gcp_api_key():
    return "AIza" + r(ALNUM + "-_", 35)


def azure_storage_key():
    return base64.b64encode(bytes(rng.getrandbits(8) for _ in range(64))).decode()


def azure_client_secret():
    return r(ALNUM, 3) + rng.choice(DIGITS) + "Q~" + r(ALNUM + "_~.-", 34)


def github_token(kind="ghp"):
    if kind == "pat":
        return "github_pat_" + r(ALNUM, 22) + "_" + r(ALNUM, 59)
    return kind + "_" + r(ALNUM, 36)


def gitlab_token():
    return "glpat-" + r(ALNUM + "-_", 20)


def slack_token(kind="xoxb"):
    return f"{kind}-{r(DIGITS, 12)}-{r(DIGITS, 13)}-{r(ALNUM, 24)}"


def slack_webhook_path():
    return f"T{r(UPPER + DIGITS, 8)}/B{r(UPPER + DIGITS, 10)}/{r(ALNUM, 24)}"


def stripe_key(kind="sk_live"):
    return f"{kind}_{r(ALNUM, rng.choice([24, 34, 99]))}"


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt():
    header = b64url(b'{"alg":"HS256","typ":"JWT"}')
    payload = b64url(
        ('{"sub":"%s","iat":%d,"exp":%d}' % (r(LOWER + DIGITS, 10), 1700000000, 1700003600)).encode()
    )
    return f"{header}.{payload}.{b64url(bytes(rng.getrandbits(8) for _ in range(32)))}"


def pem_body(nbytes, width=64):
    b = base64.b64encode(bytes(rng.getrandbits(8) for _ in range(nbytes))).decode()
    return "\n".join(b[i : i + width] for i in range(0, len(b), width))


def pem(kind, nbytes=600):
    return f"-----BEGIN {kind}-----\n{pem_body(nbytes)}\n-----END {kind}-----"


def uuid(upper=False):
    h = r(HEX, 32)
    u = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
    return u.upper() if upper else u


def sha(n=40):
    return r(HEX, n)


def sri():
    return "sha512-" + base64.b64encode(bytes(rng.getrandbits(8) for _ in range(64))).decode()


def png_b64(n=900):
    raw = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(rng.getrandbits(8) for _ in range(n))
    return base64.b64encode(raw).decode()


# A planted credential is written S(kind, value); the markers are removed when the file is
# written and its position recorded.
OPEN, MID, CLOSE = "\x01", "\x02", "\x03"


def S(kind, value):
    return f"{OPEN}{kind}{MID}{value}{CLOSE}"


files = {}


def add(path, text):
    assert path not in files, path
    files[path] = text


# ---------------------------------------------------------------- positives, by project shape

add(
    "service-a/.env",
    f"""# service-a local settings
APP_ENV=production
APP_ID={uuid()}
PORT=8080
DB_HOST=db.internal
DB_USER=service_a
DB_PASSWORD={S("password-unquoted", password())}
DATABASE_URL=postgresql://service_a:{S("url-password", password())}@db.internal:5432/service_a
STRIPE_SECRET_KEY={S("stripe-key", stripe_key())}
STRIPE_PUBLISHABLE_KEY=pk_live_{r(ALNUM, 24)}
GITHUB_TOKEN={S("github-token", github_token())}
SENTRY_DSN=https://{sha(32)}@o{r(DIGITS, 6)}.ingest.sentry.io/{r(DIGITS, 7)}
API_TOKEN={S("generic-secret", r(ALNUM, 32))}
CACHE_TTL=300
""",
)

add(
    "service-a/.env.production",
    f"""NODE_ENV=production
REDIS_URL=redis://default:{S("url-password", password())}@cache.prod.internal:6379/0
SESSION_SECRET={S("generic-secret", r(HEX, 64))}
AWS_REGION=eu-west-1
AWS_ACCESS_KEY_ID={S("aws-access-key-id", aws_key_id())}
AWS_SECRET_ACCESS_KEY={S("aws-secret-access-key", aws_secret())}
SLACK_BOT_TOKEN={S("slack-token", slack_token())}
MAIL_PASSWORD={S("password-unquoted", password())}
""",
)

add(
    "service-a/settings.py",
    f'''import os

DEBUG = False
ALLOWED_HOSTS = ["service-a.example.org"]
SECRET_KEY = "{S("generic-secret", "django-insecure-" + r(LOWER + DIGITS + "!@#$%^&*(-_=+)", 50))}"

DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "service_a",
        "USER": "service_a",
        "PASSWORD": "{S("password-assignment", password())}",
        "HOST": "db.internal",
    }}
}}

AWS_STORAGE_BUCKET_NAME = "service-a-media"
AWS_ACCESS_KEY_ID = "{S("aws-access-key-id", aws_key_id())}"
AWS_SECRET_ACCESS_KEY = "{S("aws-secret-access-key", aws_secret())}"

EMAIL_HOST_PASSWORD = os.environ["EMAIL_HOST_PASSWORD"]
STRIPE_API_KEY = "{S("stripe-key", stripe_key("rk_live"))}"
''',
)

add(
    "service-a/db.py",
    f'''import boto3
import psycopg2


def connect():
    return psycopg2.connect(host="db.internal", user="cspm", password="{S("password-assignment", password())}")


def warehouse():
    return pyodbc.connect("DRIVER={{ODBC Driver 18 for SQL Server}};SERVER=dw.internal;UID=etl;PWD={S("connection-string-password", password())}")


def s3():
    return boto3.client(
        "s3",
        aws_access_key_id="{S("aws-access-key-id", aws_key_id())}",
        aws_secret_access_key="{S("aws-secret-access-key", aws_secret())}",
    )


engine_url = "mysql+pymysql://reporter:{S("url-password", password())}@reports.internal/reports"
''',
)

add(
    "service-a/notify.py",
    f'''from slack_sdk import WebClient

client = WebClient(token="{S("slack-token", slack_token())}")
WEBHOOK = "https://hooks.slack.com/services/{S("slack-webhook", slack_webhook_path())}"
gh_token = "{S("github-token", github_token("gho"))}"
headers = {{"Authorization": "Bearer {S("jwt", jwt())}"}}
''',
)

add(
    "service-a/analysis.ipynb",
    f'''{{
 "cells": [
  {{
   "cell_type": "code",
   "execution_count": 1,
   "metadata": {{}},
   "outputs": [],
   "source": [
    "import clickhouse_connect\\n",
    "client = clickhouse_connect.get_client(host=\\"ch.internal\\", username=\\"analyst\\", password=\\"{S("password-assignment", password())}\\")\\n"
   ]
  }},
  {{
   "cell_type": "code",
   "execution_count": 2,
   "metadata": {{}},
   "outputs": [],
   "source": [
    "openai_api_key = \\"{S("generic-secret", "sk-" + r(ALNUM, 48))}\\"\\n"
   ]
  }}
 ],
 "metadata": {{"kernelspec": {{"name": "python3"}}}},
 "nbformat": 4,
 "nbformat_minor": 5
}}
''',
)

add(
    "web/src/config.js",
    f"""export const firebaseConfig = {{
  apiKey: "{S("gcp-api-key", gcp_api_key())}",
  authDomain: "shop-{r(LOWER, 6)}.firebaseapp.com",
  projectId: "shop-{r(LOWER, 6)}",
  appId: "1:{r(DIGITS, 12)}:web:{sha(22)}",
}};

const stripe = require("stripe")("{S("stripe-key", stripe_key())}");
const mapsKey = '{S("gcp-api-key", gcp_api_key())}';
export const adminToken = "{S("jwt", jwt())}";
""",
)

add(
    "web/src/api.ts",
    f"""const GITLAB_TOKEN = "{S("gitlab-token", gitlab_token())}";
const client = new Octokit({{ auth: "{S("github-token", github_token("pat"))}" }});
export const dbUrl = "mongodb+srv://app:{S("url-password", password())}@cluster0.{r(LOWER + DIGITS, 5)}.mongodb.net/shop";
const password = "{S("password-assignment", password())}";
""",
)

add(
    "worker/main.go",
    f"""package main

import (
	"database/sql"
	"os"
)

const slackToken = "{S("slack-token", slack_token("xoxp"))}"

func open() (*sql.DB, error) {{
	dbPassword := "{S("password-assignment", password())}"
	_ = dbPassword
	return sql.Open("postgres", "postgres://worker:{S("url-password", password())}@db.internal/jobs?sslmode=require")
}}

func token() string {{
	return os.Getenv("WORKER_TOKEN")
}}

var awsKeyID = "{S("aws-access-key-id", aws_key_id("ASIA"))}"
""",
)

add(
    "billing/src/main/resources/application.properties",
    f"""spring.application.name=billing
spring.datasource.url=jdbc:postgresql://db.internal:5432/billing
reports.datasource.url=jdbc:mysql://reports.internal:3306/reports?user=reports&password={S("connection-string-password", password())}&useSSL=true
spring.datasource.username=billing
spring.datasource.password={S("password-unquoted", password())}
spring.mail.password={S("password-unquoted", password())}
jwt.secret={S("generic-secret", r(B64, 64))}
management.endpoints.web.exposure.include=health,info
stripe.api-key={S("stripe-key", stripe_key())}
""",
)

add(
    "billing/src/main/resources/application.yml",
    f"""spring:
  datasource:
    url: jdbc:mysql://db.internal:3306/billing
    username: billing
    password: {S("password-unquoted", password())}
  rabbitmq:
    host: mq.internal
    password: "{S("password-assignment", password())}"
app:
  gitlab:
    token: {S("gitlab-token", gitlab_token())}
  notifications:
    slack-webhook: https://hooks.slack.com/services/{S("slack-webhook", slack_webhook_path())}
""",
)

add(
    "dotnet/appsettings.json",
    f"""{{
  "Logging": {{ "LogLevel": {{ "Default": "Information" }} }},
  "ConnectionStrings": {{
    "Storage": "DefaultEndpointsProtocol=https;AccountName=billinglogs;AccountKey={S("azure-storage-key", azure_storage_key())};EndpointSuffix=core.windows.net",
    "Sql": "Server=tcp:billing.database.windows.net,1433;Database=billing;User ID=billing;Password={S("connection-string-password", password())};Encrypt=True;"
  }},
  "AzureAd": {{
    "Instance": "https://login.microsoftonline.com/",
    "TenantId": "{uuid()}",
    "ClientId": "{uuid()}",
    "ClientSecret": "{S("azure-client-secret", azure_client_secret())}"
  }},
  "Stripe": {{ "SecretKey": "{S("stripe-key", stripe_key("sk_live"))}" }}
}}
""",
)

add(
    "infra/main.tf",
    f"""provider "aws" {{
  region     = "eu-west-1"
  access_key = "{S("aws-access-key-id", aws_key_id())}"
  secret_key = "{S("aws-secret-access-key", aws_secret())}"
}}

provider "azurerm" {{
  features {{}}
  subscription_id = "{uuid()}"
  client_id       = "{uuid()}"
  client_secret   = "{S("azure-client-secret", azure_client_secret())}"
  tenant_id       = "{uuid()}"
}}

resource "aws_db_instance" "main" {{
  identifier = "billing"
  username   = "billing"
  password   = "{S("password-assignment", password())}"
  engine     = "postgres"
}}

resource "azurerm_storage_account" "logs" {{
  name = "billinglogs"
}}

variable "storage_account_key" {{
  default = "{S("azure-storage-key", azure_storage_key())}"
}}
""",
)

add(
    "infra/aws-credentials",
    f"""[default]
aws_access_key_id = {S("aws-access-key-id", aws_key_id())}
aws_secret_access_key = {S("aws-secret-access-key", aws_secret())}
region = eu-west-1

[deploy]
aws_access_key_id = {S("aws-access-key-id", aws_key_id())}
aws_secret_access_key = {S("aws-secret-access-key", aws_secret())}
""",
)

add(
    "deploy/docker-compose.yml",
    f"""services:
  db:
    image: postgres:16
    environment:
      POSTGRES_USER: app
      POSTGRES_PASSWORD: {S("password-unquoted", password())}
  mysql:
    image: mysql:8
    environment:
      - MYSQL_ROOT_PASSWORD={S("password-unquoted", password())}
  app:
    image: registry.internal/app@sha256:{sha(64)}
    environment:
      DATABASE_URL: "postgres://app:{S("url-password", password())}@db:5432/app"
      REDIS_URL: redis://:{S("url-password", password())}@redis:6379/0
""",
)

add(
    "deploy/k8s/secret.yaml",
    f"""apiVersion: v1
kind: Secret
metadata:
  name: billing-db
  uid: {uuid()}
type: Opaque
stringData:
  username: billing
  password: {S("password-unquoted", password())}
data:
  api-token: {S("generic-secret", base64.b64encode(r(ALNUM, 32).encode()).decode())}
""",
)

add(
    "deploy/deploy.sh",
    f"""#!/usr/bin/env bash
set -euo pipefail
export AWS_ACCESS_KEY_ID={S("aws-access-key-id", aws_key_id())}
export AWS_SECRET_ACCESS_KEY="{S("aws-secret-access-key", aws_secret())}"
export CLICKHOUSE_PASSWORD='{S("password-assignment", password())}'
git clone https://x-access-token:{S("github-token", github_token("ghs"))}@github.com/acme/infra.git
curl -fsS -H "Authorization: Bearer ${{DEPLOY_TOKEN}}" https://deploy.internal/api/v1/release
mysql -h db.internal -u admin --password={S("password-unquoted", password())} < schema.sql
""",
)

add(
    ".github/workflows/deploy.yml",
    f"""name: deploy
on: push
jobs:
  deploy:
    runs-on: ubuntu-latest
    env:
      SLACK_WEBHOOK_URL: https://hooks.slack.com/services/{S("slack-webhook", slack_webhook_path())}
      NPM_TOKEN: ${{{{ secrets.NPM_TOKEN }}}}
    steps:
      - uses: actions/checkout@{sha()}
      - run: ./deploy.sh
        env:
          GITLAB_TOKEN: {S("gitlab-token", gitlab_token())}
""",
)

add(
    ".npmrc",
    f"""registry=https://registry.npmjs.org/
//registry.npmjs.org/:_authToken={S("generic-secret", "npm_" + r(ALNUM, 36))}
""",
)

add(
    ".pypirc",
    f"""[distutils]
index-servers = pypi

[pypi]
username = __token__
password = {S("password-ini", "pypi-AgEIcHlwaS5vcmc" + r(B64URL, 150))}
""",
)

add(
    "ops/my.cnf",
    f"""[client]
user = backup
password = {S("password-ini", password())}
host = db.internal
""",
)

add(
    "service-a/alembic.ini",
    f"""[alembic]
script_location = migrations
sqlalchemy.url = postgresql://migrator@db.internal/service_a
sqlalchemy.password = {S("password-ini", password())}
""",
)

add(
    "php/config.php",
    f"""<?php
$db_host = 'db.internal';
$db_password = "{S("password-assignment", password())}";
define('MAILER_PASSWORD', '{S("password-assignment", password())}');
$stripe = new \\Stripe\\StripeClient('{S("stripe-key", stripe_key())}');
""",
)

add(
    "ruby/config/database.yml",
    f"""default: &default
  adapter: postgresql
  password: <%= ENV["DATABASE_PASSWORD"] %>

production:
  <<: *default
  database: shop
  username: shop
  password: {S("password-unquoted", password())}
""",
)

for i, kind in enumerate(["RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY"]):
    add(f"keys/key{i}.pem", S("private-key", pem(kind, 300 + 300 * (i % 2))) + "\n")
add("keys/id_ed25519", S("private-key", pem("OPENSSH PRIVATE KEY", 300)) + "\n")
add(
    "keys/signing.asc",
    S(
        "private-key",
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n" + pem_body(900) + "\n=" + r(B64, 4)
        + "\n-----END PGP PRIVATE KEY BLOCK-----",
    )
    + "\n",
)
add(
    "service-a/tls.py",
    f'''TLS_KEY = """{S("private-key", pem("RSA PRIVATE KEY", 600))}"""
''',
)

for i in range(3):
    key = pem("PRIVATE KEY", 1200).replace("\n", "\\n") + "\\n"
    project = f"proj-{r(LOWER, 6)}"
    add(
        f"gcp/sa-{i}.json",
        f"""{{
  "type": "service_account",
  "project_id": "{project}",
  "private_key_id": "{sha()}",
  "private_key": "{S("gcp-service-account", key)}",
  "client_email": "deployer@{project}.iam.gserviceaccount.com",
  "client_id": "{r(DIGITS, 21)}",
  "auth_uri": "https://accounts.google.com/o/oauth2/auth",
  "token_uri": "https://oauth2.googleapis.com/token"
}}
""",
    )

add(
    "gcp/maps.yaml",
    f"""maps:
  api_key: {S("gcp-api-key", gcp_api_key())}
  region: eu
""",
)

add(
    "azure/local.settings.json",
    f"""{{
  "IsEncrypted": false,
  "Values": {{
    "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=funcstore;AccountKey={S("azure-storage-key", azure_storage_key())};EndpointSuffix=core.windows.net",
    "AZURE_CLIENT_ID": "{uuid()}",
    "AZURE_CLIENT_SECRET": "{S("azure-client-secret", azure_client_secret())}",
    "FUNCTIONS_WORKER_RUNTIME": "python"
  }}
}}
""",
)

add(
    "azure/pipeline.env",
    f"""AZURE_STORAGE_KEY={S("azure-storage-key", azure_storage_key())}
AZURE_CLIENT_SECRET={S("azure-client-secret", azure_client_secret())}
""",
)

add(
    "tests/test_auth.py",
    f'''def test_login(client):
    token = "{S("jwt", jwt())}"
    resp = client.get("/me", headers={{"Authorization": f"Bearer {{token}}"}})
    assert resp.status_code == 200
''',
)

add(
    "ops/runbook.md",
    f"""# Restoring the billing database

Connect with the break-glass account:

    psql "postgresql://breakglass:{S("url-password", password())}@billing-db.internal:5432/billing"

The Slack alert bot uses `{S("slack-token", slack_token())}`; rotate it after an incident.
The GitLab deploy token is `{S("gitlab-token", gitlab_token())}`.
""",
)

# ---------------------------------------------------------------- hard negatives

with open(os.path.join(HERE, "..", "..", "Cargo.lock")) as f:
    lock = f.read()
# The first 60 packages of this workspace's own lockfile: real checksums.
add("negatives/Cargo.lock", "\n[[package]]".join(lock.split("\n[[package]]")[:61]) + "\n")

pkgs = ["js-tokens", "safe-buffer", "secret-stack", "tokenize", "passport-jwt", "password-prompt",
        "api-key-auth", "keygrip", "credential-helper", "aws-sdk"]
entries = []
for p in pkgs:
    v = f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
    entries.append(
        f"""    "node_modules/{p}": {{
      "version": "{v}",
      "resolved": "https://registry.npmjs.org/{p}/-/{p}-{v}.tgz",
      "integrity": "{sri()}"
    }}"""
    )
add(
    "negatives/package-lock.json",
    '{\n  "name": "web",\n  "lockfileVersion": 3,\n  "packages": {\n' + ",\n".join(entries) + "\n  }\n}\n",
)
add(
    "negatives/yarn.lock",
    "".join(
        f'{p}@^1.0.0:\n  version "1.0.{i}"\n  resolved "https://registry.yarnpkg.com/{p}/-/{p}-1.0.{i}.tgz#{sha()}"\n  integrity {sri()}\n\n'
        for i, p in enumerate(pkgs)
    ),
)
add(
    "negatives/go.sum",
    "".join(
        f"github.com/{o}/{n} v1.{i}.0 h1:{base64.b64encode(bytes(rng.getrandbits(8) for _ in range(32))).decode()}\n"
        f"github.com/{o}/{n} v1.{i}.0/go.mod h1:{base64.b64encode(bytes(rng.getrandbits(8) for _ in range(32))).decode()}\n"
        for i, (o, n) in enumerate([("golang-jwt", "jwt"), ("aws", "aws-sdk-go"), ("hashicorp", "vault"),
                                    ("go-sql-driver", "mysql"), ("slack-go", "slack")])
    ),
)
add(
    "negatives/poetry.lock",
    "".join(
        f'[[package]]\nname = "{n}"\nversion = "2.{i}.1"\nfiles = [\n    {{file = "{n}-2.{i}.1-py3-none-any.whl", hash = "sha256:{sha(64)}"}},\n]\n\n'
        for i, n in enumerate(["keyring", "secretstorage", "python-jose", "pyjwt", "boto3"])
    ),
)
add(
    "negatives/.terraform.lock.hcl",
    "".join(
        f'provider "registry.terraform.io/hashicorp/{n}" {{\n  version = "5.{i}.0"\n  hashes = [\n    "h1:{base64.b64encode(bytes(rng.getrandbits(8) for _ in range(32))).decode()}",\n    "zh:{sha(64)}",\n  ]\n}}\n\n'
        for i, n in enumerate(["aws", "azurerm", "google", "random"])
    ),
)
add(
    "negatives/ids.py",
    f'''REQUEST_ID = "{uuid()}"
TENANT_ID = "{uuid()}"
token_id = "{uuid()}"
session_token_id = "{uuid()}"
SECRET_VERSION_ID = "{uuid()}"
trace = "{sha(32)}"
commit = "{sha()}"
ETAG = '"{sha(32)}"'
''',
)
add(
    "negatives/Ids.cs",
    f"""namespace Billing;

public static class Ids
{{
    public static readonly Guid TokenProviderId = new Guid("{uuid(upper=True)}");
    public static readonly Guid SecretStoreId = new Guid("{uuid(upper=True)}");
}}
""",
)
add(
    "negatives/CHANGELOG.md",
    "".join(
        f"- {sha()[:12]} fix token refresh when the secret rotates ({sha()})\n" for _ in range(8)
    ),
)
add(
    "negatives/images.css",
    f""".logo {{ background-image: url("data:image/png;base64,{png_b64()}"); }}
.icon-key {{ background: url(data:image/png;base64,{png_b64(400)}) no-repeat; }}
""",
)
add(
    "negatives/README.md",
    f"""# Tokens and secrets

![secret flow](data:image/png;base64,{png_b64(1200)})

Set `API_TOKEN` in your environment; never commit it.
""",
)
add(
    "negatives/plot.ipynb",
    f"""{{
 "cells": [{{"cell_type": "code", "execution_count": 3, "metadata": {{}},
   "outputs": [{{"data": {{"image/png": "{png_b64(3000)}", "text/plain": ["<Figure>"]}},
     "metadata": {{}}, "output_type": "display_data"}}],
   "source": ["token_counts.plot()"]}}],
 "metadata": {{}}, "nbformat": 4, "nbformat_minor": 5
}}
""",
)
add(
    "negatives/fixtures/config.yaml",
    """database:
  host: localhost
  password: changeme
  replica_password: ${REPLICA_PASSWORD}
  admin_password: "{{ vault_admin_password }}"
  url: postgresql://user:${DB_PASSWORD}@localhost/app
smtp:
  password: <your-smtp-password>
api:
  token: ${API_TOKEN}
  secret: xxxxxxxxxxxxxxxx
  key: example-api-key
github:
  token: ${{ secrets.GITHUB_TOKEN }}
""",
)
add(
    "negatives/fixtures/.env.example",
    """DB_PASSWORD=
DB_PASSWORD_FILE=/run/secrets/db_password
API_TOKEN=your-api-token-here
STRIPE_SECRET_KEY=sk_live_...
AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE
AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
DATABASE_URL=postgresql://user:password@localhost:5432/app
REDIS_URL=redis://localhost:6379/0
""",
)
add(
    "negatives/secrets_client.py",
    '''import getpass
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
''',
)
add(
    "negatives/test_hashing.py",
    f'''def test_bcrypt_roundtrip():
    password_hash = "$2b$12${r(B64.replace("+", "."), 53)}"
    assert verify("correct horse", password_hash)


def test_token_shape():
    assert len(make_token()) == 32
''',
)
add(
    "negatives/schema.sql",
    """CREATE TABLE users (
  id UUID PRIMARY KEY,
  password_hash VARCHAR(255) NOT NULL,
  reset_token VARCHAR(64),
  api_key_prefix CHAR(8)
);
""",
)
add(
    "negatives/login.html",
    """<form method="post">
  <input type="hidden" name="csrf_token" value="{{ csrf_token }}">
  <input type="password" name="password" autocomplete="current-password">
</form>
""",
)
add(
    "negatives/en.json",
    """{
  "password": "Password",
  "password_hint": "At least 12 characters",
  "token_expired": "Your session has expired; sign in again.",
  "secret_label": "Secret name"
}
""",
)
add(
    "negatives/keys/id_rsa.pub",
    f"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ{r(B64, 340)} deploy@ci\n",
)
add(
    "negatives/keys/authorized_keys",
    f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{r(B64, 43)} alice@laptop\n"
    f"ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBB{r(B64, 88)}= bob@desktop\n",
)
add("negatives/keys/public.pem", pem("PUBLIC KEY", 294) + "\n")
add("negatives/keys/ca.crt", pem("CERTIFICATE", 900) + "\n")
add(
    "negatives/keys/release.asc",
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n" + pem_body(900) + "\n-----END PGP PUBLIC KEY BLOCK-----\n",
)
add(
    "negatives/jwks.json",
    f"""{{"keys": [{{"kty": "RSA", "use": "sig", "kid": "{sha(16)}", "alg": "RS256", "e": "AQAB",
  "n": "{b64url(bytes(rng.getrandbits(8) for _ in range(256)))}"}}]}}
""",
)
add(
    "negatives/k8s/deployment.yaml",
    f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: billing
spec:
  template:
    spec:
      containers:
        - name: billing
          image: registry.internal/billing@sha256:{sha(64)}
          env:
            - name: DB_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: billing-db
                  key: password
            - name: API_TOKEN_FILE
              value: /var/run/secrets/api/token
""",
)
add(
    "negatives/docs/aws.md",
    """Configure the CLI with your keys (these are AWS's documentation examples):

    aws_access_key_id = AKIAIOSFODNN7EXAMPLE
    aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY

A token looks like `ghp_` followed by 36 characters; a Stripe key starts with `sk_live_`.
""",
)
add(
    "negatives/vendor.min.js",
    "!function(){var e=\"" + r(ALNUM, 64) + "\",t={tokenize:function(n){return n.split(\" \")},secretKey:null,"
    + "hash:\"" + sha(64) + "\"};window.__v=\"" + r(ALNUM + "_-", 40) + "\"}();\n",
)
add(
    "negatives/pagination.json",
    f"""{{
  "items": [],
  "next_page_token": "{r(B64URL, 46)}",
  "etag": "W/\\"{sha(32)}\\"",
  "resource_version": "{r(DIGITS, 9)}"
}}
""",
)

# ---------------------------------------------------------------- write

shutil.rmtree(OUT, ignore_errors=True)
labels = []
for path in sorted(files):
    text = files[path]
    out = []
    i = 0
    line, col = 1, 1
    while i < len(text):
        c = text[i]
        if c == OPEN:
            j = text.index(MID, i)
            k = text.index(CLOSE, j)
            kind, value = text[i + 1 : j], text[j + 1 : k]
            labels.append((path, line, col, len(value.encode()), kind))
            out.append(value)
            nl = value.count("\n")
            if nl:
                line += nl
                col = len(value.rsplit("\n", 1)[1].encode()) + 1
            else:
                col += len(value.encode())
            i = k + 1
            continue
        out.append(c)
        if c == "\n":
            line, col = line + 1, 1
        else:
            col += len(c.encode())
        i += 1
    full = os.path.join(OUT, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w", newline="") as f:
        f.write("".join(out))

with open(LABELS, "w") as f:
    f.write(
        "# Written by make_corpus.py: every credential planted in corpus/, with the kind of\n"
        "# credential it is (the rule meant to find it): 1-based line and byte column of its first\n"
        "# byte, length in bytes. Anything a rule reports elsewhere is a false positive.\n"
    )
    for path, line, col, length, kind in labels:
        f.write(
            f'\n[[credential]]\nfile = "{path}"\nline = {line}\ncolumn = {col}\nlength = {length}\nkind = "{kind}"\n'
        )
print(f"{len(files)} files, {len(labels)} credentials")
