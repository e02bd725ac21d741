//! The `bastion` executable: the allocator, then [`bastion::cli::main`].
#![forbid(unsafe_code)]

/// A gateway allocates and frees many small buffers per request (JSON values,
/// headers, bodies): mimalloc's thread-local free lists make that cheaper than
/// glibc's allocator (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    bastion::cli::main()
}
