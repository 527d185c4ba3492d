//! AWS Secrets Manager store and AWS KMS master-key provider.
