pub mod blob;
mod shared_key;
