//! The `mandate` binary: everything is in the library, so tests and the binary share one path.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    mandate_cli::main()
}
