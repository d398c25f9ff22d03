// mimalloc instead of glibc's malloc: a request allocates and frees dozens of small buffers
// across two worker threads, and glibc's malloc/free/consolidate were ~10 % of the server's
// CPU under load (perf); with mimalloc the key path served ~5 % more requests on average over
// 12 alternating runs (1–15 % per set; README "Benchmarks").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(latchkey::cli::main());
}
