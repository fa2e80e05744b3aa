//! Switchyard's offline training: routing data importers, the embedding cache, and the
//! classifier heads' training loop. Everything here runs offline, never in the gateway.

pub mod cache;
pub mod classifier;
pub mod data;
pub mod import;
pub mod pairs;
pub mod pyliteral;
pub mod scorer;
pub mod taxonomy;
pub mod train;
pub mod verifier;
