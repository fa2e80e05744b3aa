//! State that several gateway replicas share, kept in Redis (or Valkey, same protocol):
//!
//! - tenant token and USD budgets and per-minute rate limits, as atomic reservations: one
//!   Lua script checks the budgets, takes a rate token and reserves the request's estimate
//!   in one round trip; another replaces the reservation with the real spend;
//! - request ids and the tenant that made each one, so feedback posted to any replica finds
//!   the request whichever replica served it;
//! - the router to serve (version and scorer directory), so a promotion on one replica
//!   reaches the others, and each promoted router's files with their checksum and the
//!   history of promotions and rollbacks ([`routers`]), so no replica needs a shared
//!   directory;
//! - leases, so at most one process holds a role (the learner) among those sharing Redis.
//!
//! Every call is bounded by a timeout; errors say whether Redis could not be reached, so
//! the caller can apply its own policy (fail open with local limits, or closed). The
//! connection reconnects by itself, with exponential backoff.

mod lease;
pub mod routers;
mod shared;

pub use routers::{RouterArtifact, RouterHistoryEntry};
pub use shared::*;
