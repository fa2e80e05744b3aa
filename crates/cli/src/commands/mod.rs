//! One module per subcommand; each resolves its arguments and calls library code.

pub mod cache;
pub mod calibrate;
pub mod classify;
pub mod datasets;
pub mod embed;
pub mod eval;
pub mod eval_cache;
mod eval_traffic;
pub mod label;
pub mod learn;
mod lines;
pub mod model_args;
mod output;
mod prices;
mod progress;
pub mod route;
pub mod router;
pub mod serve;
pub mod sim;
pub mod train;
