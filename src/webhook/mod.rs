//! What GitHub sends, and the one door it comes in by: [`intake`] bounds the body, checks
//! the content type, verifies the [`signature`] over the exact bytes received, reads
//! GitHub's headers and parses the payload into one of the [`events`] — minimal, private
//! serde shapes holding only the fields deployhook reads. The bodies being read share a
//! [`budget`]: small ones first, a share per client.
//!
//! May use: `model`.

pub mod budget;
pub mod events;
pub mod intake;
pub mod signature;
