//! Switchyard's evaluation library: each evaluation computes a report struct (serialisable
//! to JSON) and renders a readable table to any `impl Write`. The CLI is a thin wrapper.

pub mod cache_eval;
pub mod cache_replay;
pub mod calibrate;
pub mod classifier;
pub mod compare;
pub mod ope;
pub mod plot;
pub mod route_eval;
pub mod routing;
