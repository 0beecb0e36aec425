//! Cost centres of a function process's profile: `perf` samples by symbol, grouped by the crate
//! (or kernel/libc) the sampled function belongs to. Leaf frames only, so a function inlined into
//! its caller counts for the caller's crate: the split is by where the instructions ran.

/// A cost centre and the crates (symbol path prefixes) or shared objects that make it up.
pub const CENTRES: [(&str, &[&str]); 9] = [
    (
        "SDK orchestration, config, (de)serialisation",
        &[
            "aws_smithy_runtime",
            "aws_smithy_runtime_api",
            "aws_smithy_types",
            "aws_smithy_json",
            "aws_smithy_http",
            "aws_smithy_async",
            "aws_smithy_observability",
            "aws_smithy_schema",
            "aws_sdk_dynamodb",
            "aws_runtime",
            "aws_types",
            "aws_config",
            "aws_credential_types",
        ],
    ),
    (
        "SigV4 signing and hashing",
        &[
            "aws_sigv4",
            "sha2",
            "hmac",
            "ring",
            "aws_lc",
            "sha256",
            "hex",
            "percent_encoding",
        ],
    ),
    (
        "HTTP client (hyper, connection pool)",
        &["hyper", "hyper_util", "h2", "http", "http_body", "tower"],
    ),
    (
        "tokio runtime (scheduler, park, timers, I/O driver)",
        &["tokio", "mio"],
    ),
    (
        "logging (tracing)",
        &[
            "tracing_subscriber",
            "tracing_core",
            "tracing",
            "sharded_slab",
        ],
    ),
    (
        "own code, JSON, Lambda event and runtime client",
        &[
            "loyalty_",
            "serde_json",
            "serde_dynamo",
            "serde",
            "lambda_http",
            "lambda_runtime",
            "aws_lambda_events",
            "query_map",
            "chrono",
            "ulid",
            "base64",
        ],
    ),
    (
        "allocator, memcpy, libc",
        &[
            "malloc", "free", "realloc", "memcpy", "memmove", "memset", "cfree", "_int_",
        ],
    ),
    ("kernel (syscalls: loopback TCP, futex, epoll)", &["[k]"]),
    ("other", &[]),
];

/// The centre a `perf report --sort dso,sym` entry (`dso  [.] symbol`) belongs to.
pub fn centre_of(entry: &str) -> &'static str {
    if entry.contains("[k]") {
        return CENTRES[7].0;
    }
    let symbol = entry.split_once("] ").map_or(entry, |(_, s)| s);
    // The crate named first in the (demangled) symbol: `<hyper::X as tokio::Y>::poll` is hyper's.
    let mut best: Option<(usize, &'static str)> = None;
    for (centre, prefixes) in CENTRES.iter().take(6) {
        for prefix in prefixes.iter() {
            let mut from = 0;
            while let Some(found) = symbol[from..].find(prefix) {
                let at = from + found;
                let boundary_before = at == 0
                    || !symbol.as_bytes()[at - 1].is_ascii_alphanumeric()
                        && symbol.as_bytes()[at - 1] != b'_';
                let after = symbol.as_bytes().get(at + prefix.len()).copied();
                let boundary_after = prefix.ends_with('_')
                    || matches!(
                        after,
                        None | Some(b':') | Some(b'<') | Some(b'>') | Some(b' ')
                    );
                if boundary_before && boundary_after {
                    if best.is_none_or(|(b, _)| at < b) {
                        best = Some((at, centre));
                    }
                    break;
                }
                from = at + prefix.len();
            }
        }
    }
    if let Some((_, centre)) = best {
        return centre;
    }
    let (dso, _) = entry.split_once(' ').unwrap_or((entry, ""));
    if dso.starts_with("libc") || dso.starts_with("ld-linux") {
        return CENTRES[6].0;
    }
    if CENTRES[6].1.iter().any(|p| symbol.starts_with(p)) {
        return CENTRES[6].0;
    }
    if symbol.contains("sha256") || symbol.contains("SHA256") {
        return CENTRES[1].0;
    }
    CENTRES[8].0
}

/// `(cost centre, share %)` in [`CENTRES`] order.
pub type Shares = Vec<(&'static str, f64)>;
/// `(dso + symbol, share %)`.
pub type Symbols = Vec<(String, f64)>;

/// Shares (of all samples) per centre, in [`CENTRES`] order, and the top symbols.
pub fn summarise(entries: &[(String, f64)]) -> (Shares, Symbols) {
    let total: f64 = entries.iter().map(|e| e.1).sum::<f64>().max(1e-9);
    let shares = CENTRES
        .iter()
        .map(|(centre, _)| {
            let sum: f64 = entries
                .iter()
                .filter(|(entry, _)| centre_of(entry) == *centre)
                .map(|e| e.1)
                .sum();
            (*centre, sum * 100.0 / total)
        })
        .collect();
    let mut top: Vec<(String, f64)> = entries
        .iter()
        .map(|(e, s)| (e.clone(), s * 100.0 / total))
        .collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    top.truncate(12);
    (shares, top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symbol_goes_to_the_crate_it_names_first() {
        assert_eq!(
            centre_of("accrue  [.] <hyper::proto::h1::Conn<T> as tokio::io::AsyncRead>::poll"),
            CENTRES[2].0
        );
        assert_eq!(
            centre_of("accrue  [.] tokio::runtime::scheduler::multi_thread::park::Parker::park"),
            CENTRES[3].0
        );
        assert_eq!(
            centre_of("[kernel.kallsyms]  [k] do_syscall_64"),
            CENTRES[7].0
        );
        assert_eq!(
            centre_of("libc.so.6  [.] __memmove_avx_unaligned"),
            CENTRES[6].0
        );
        assert_eq!(
            centre_of("accrue  [.] loyalty_core::service::accrue::plan"),
            CENTRES[5].0
        );
        assert_eq!(
            centre_of("accrue  [.] aws_sigv4::http_request::sign::sign"),
            CENTRES[1].0
        );
        assert_eq!(centre_of("accrue  [.] 0x0000000000412345"), CENTRES[8].0);
    }

    #[test]
    fn shares_add_up_to_the_whole_profile() {
        let entries = vec![
            ("accrue  [.] tokio::x".to_owned(), 30.0),
            ("accrue  [.] hyper::y".to_owned(), 10.0),
        ];
        let (shares, top) = summarise(&entries);
        let sum: f64 = shares.iter().map(|s| s.1).sum();
        assert!((sum - 100.0).abs() < 1e-6);
        assert_eq!(top[0].0, "accrue  [.] tokio::x");
    }
}
