provider "aws" {
  region     = "eu-west-1"
  access_key = "AKIA43HSZA3J2HNBMZK4"
  secret_key = "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"
}

provider "azurerm" {
  features {}
  subscription_id = "b9722c70-951c-4d2d-a65b-610b89e16a9c"
  client_id       = "02d799aa-1e43-4c71-a941-f7cfc913e3a9"
  client_secret   = "WOQ4Q~AvvKRNT9Y~8Ksq4f1~C~qfAjmYOoxlI5-~"
  tenant_id       = "47099574-908d-4e9c-a2c1-5be9a2de5da8"
}

resource "aws_db_instance" "main" {
  identifier = "billing"
  username   = "billing"
  password   = "TAVz2BD1gUXDSWogU"
  engine     = "postgres"
}

resource "azurerm_storage_account" "logs" {
  name = "billinglogs"
}

variable "storage_account_key" {
  default = "a7Bowuyu+KUzL06ezNWUCPJSNBglQ2QmKsRB+Rxhm3YYXzE2gIMDhX/xKbyfon46Z4r9dMr1GirTxJmA/YHBnw=="
}
