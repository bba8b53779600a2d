//! The `mandate` binary: everything is in the library, so tests and the binary share one path.
#![forbid(unsafe_code)]

/// mimalloc instead of the system allocator: a decision allocates and frees many small objects on
/// two runtime threads, and glibc's malloc took about a sixth of the server's CPU under load
/// (BENCHMARKS.md, Load).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mandate_cli::main()
}
