//! Azure: Blob Storage (the object store), Key Vault (the key manager) and the
//! storage account's encryption settings. The Azure APIs are touched only here.

pub mod account;
pub mod blob;
pub mod keyvault;
mod shared_key;
