//! One module per subcommand; each resolves its arguments and calls library code.

pub mod embed;
pub mod model_args;
