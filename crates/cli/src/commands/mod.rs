//! One module per subcommand; each resolves its arguments and calls library code.

pub mod datasets;
pub mod embed;
pub mod model_args;
mod output;
mod progress;
