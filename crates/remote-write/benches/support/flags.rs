//! Command-line flags of the benchmark binaries: `--name VALUE` numbers.
//! (`cargo bench` adds `--bench`, which is ignored.)

/// The number after `--name` on the command line, or `default`.
pub fn flag(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|pair| pair[0] == format!("--{name}"))
        .map(|pair| {
            pair[1]
                .parse()
                .unwrap_or_else(|_| panic!("--{name} takes a number, not {:?}", pair[1]))
        })
        .unwrap_or(default)
}
