//! Google Cloud: Cloud Storage (fake-gcs-server on the bed) and Cloud KMS key names.

pub mod gcs;
pub mod kms;
