//! The HTTP edge: the axum application and its handlers ([`app`]), the server's event
//! loops and connection limits ([`server`]), and the one place errors become responses
//! ([`response`]).

pub mod app;
pub mod response;
pub mod server;
