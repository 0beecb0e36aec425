//! Finds the API Gateway fixtures that ship inside the `aws_lambda_events` crate, so the handler
//! tests feed AWS's own example events rather than hand-written ones.

use std::process::Command;

fn main() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let host = std::env::var("HOST").unwrap_or_default();
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    // Filtering on the host platform keeps cargo from asking for crates of other targets.
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
            &host,
        ])
        .current_dir(&manifest_dir)
        .output()
        .expect("cargo metadata runs");
    let metadata = String::from_utf8_lossy(&output.stdout);
    let marker = "/aws_lambda_events-";
    let manifest = metadata
        .split('"')
        .find(|s| s.contains(marker) && s.ends_with("/Cargo.toml"))
        .unwrap_or_else(|| {
            panic!(
                "aws_lambda_events not found by cargo metadata: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let fixtures = manifest.trim_end_matches("Cargo.toml").to_owned() + "src/fixtures";
    println!("cargo:rustc-env=AWS_LAMBDA_EVENTS_FIXTURES={fixtures}");
    println!("cargo:rerun-if-changed=Cargo.toml");
}
