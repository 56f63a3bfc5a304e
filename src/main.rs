//! The `zarish` binary: the server and its administration commands.

use std::process::ExitCode;

fn main() -> ExitCode {
    zarish::cli::main()
}
