#!/usr/bin/env bash
set -euo pipefail
export AWS_ACCESS_KEY_ID=AKIAWEE36SIGMOBBX64F
export AWS_SECRET_ACCESS_KEY="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"
export CLICKHOUSE_PASSWORD='5v8pLkbZAL2JhE4b9sZ7'
git clone https://x-access-token:ghs_A5IQYWvrL7dFHhZbwjGiEDrjRiGIFryAXs16@github.com/acme/infra.git
curl -fsS -H "Authorization: Bearer ${DEPLOY_TOKEN}" https://deploy.internal/api/v1/release
mysql -h db.internal -u admin --password=8mgtrQt9y4LHfCEtx < schema.sql
