#[doc(hidden)]
pub mod cluster;
