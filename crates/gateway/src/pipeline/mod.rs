//! The request pipeline: a chat request from its body to its answer. [`request`] reads
//! the body; [`plan`] resolves the target and orders the models; [`chat`] runs the steps
//! (limits, cache, routing, forwarding); [`forward`] is the fallback loop; [`stream`]
//! relays a streamed answer; [`store`] caches an answer; [`trace`] accounts for the
//! request and writes its record; [`shadow`] scores a shadow router beside it; [`judge`]
//! grades logged answers offline with a model.

pub mod chat;
pub mod forward;
pub mod judge;
pub mod plan;
pub mod request;
pub mod shadow;
pub mod store;
pub mod stream;
pub mod trace;
