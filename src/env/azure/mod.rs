pub mod keyvault;
