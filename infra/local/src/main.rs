//! `loyalty-local serve`: the template's HTTP API on a loopback port, backed by DynamoDB Local,
//! handlers in-process.
//! `loyalty-local run`: the whole template with the real function binaries (see `runner`).
//! `loyalty-local demo`: walks a running stack end to end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use aws_config::meta::region::RegionProviderChain;
use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::config::Credentials;
use loyalty_core::clock::SystemClock;
use loyalty_core::ports::ProgramStore;
use loyalty_core::service::AppConfig;
use loyalty_core::App;
use loyalty_dynamo::DynamoStore;
use loyalty_local::jwt::SigningKey;
use loyalty_local::{tables, LocalApi, LocalError, Template};

const USAGE: &str = "usage: loyalty-local serve --template PATH --dynamodb URL --listen ADDR --program PATH [--table NAME]
                           [--jwt-key PATH]
       loyalty-local run --template PATH --dynamodb URL [--sqs URL] --listen ADDR [--program PATH] [--table NAME]
                         [--bin-dir DIR] [--release] [--no-build] [--no-schedules] [--jwt-key PATH]
                         [--clock-offset SECONDS | --now RFC3339]
       loyalty-local demo [--api http://127.0.0.1:3000]";
const DEFAULT_TABLE: &str = "loyalty-local";

/// Where the development issuer keeps its key: one per stack (named by its table), so tokens
/// stay valid across restarts of the same stack.
fn default_key_path(table: &str) -> PathBuf {
    PathBuf::from(format!(".local/run/jwt-{table}.pem"))
}

fn load_signing_key(path: &std::path::Path) -> Result<Arc<SigningKey>, LocalError> {
    let key = SigningKey::load_or_create(path)?;
    println!(
        "JWT issuer key {} (kid {}); mint tokens with POST /_local/tokens",
        path.display(),
        key.public_jwk().kid
    );
    Ok(Arc::new(key))
}

#[derive(Debug)]
struct Args {
    template: PathBuf,
    dynamodb: String,
    listen: SocketAddr,
    program: PathBuf,
    table: String,
    jwt_key: PathBuf,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, LocalError> {
    let usage = |problem: &str| LocalError::Usage(format!("{problem}\n{USAGE}"));
    match args.next().as_deref() {
        Some("serve") => {}
        Some("-h" | "--help") | None => return Err(usage("")),
        Some(other) => return Err(usage(&format!("unknown command '{other}'"))),
    }
    let (mut template, mut dynamodb, mut listen, mut program, mut table, mut jwt_key) =
        (None, None, None, None, None, None);
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--template" => &mut template,
            "--dynamodb" => &mut dynamodb,
            "--listen" => &mut listen,
            "--program" => &mut program,
            "--table" => &mut table,
            "--jwt-key" => &mut jwt_key,
            _ => return Err(usage(&format!("unknown argument '{flag}'"))),
        };
        *slot = Some(
            args.next()
                .ok_or_else(|| usage(&format!("{flag} needs a value")))?,
        );
    }
    let required = |value: Option<String>, flag: &str| {
        value.ok_or_else(|| usage(&format!("{flag} is required")))
    };
    let listen_text = required(listen, "--listen")?;
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        usage(&format!(
            "--listen '{listen_text}' is not an IP:PORT address"
        ))
    })?;
    // Anyone can mint tokens at /_local/tokens; the API must not be reachable from other machines.
    if !listen.ip().is_loopback() {
        return Err(usage(&format!(
            "--listen {listen} is not a loopback address"
        )));
    }
    Ok(Args {
        template: required(template, "--template")?.into(),
        dynamodb: required(dynamodb, "--dynamodb")?,
        listen,
        program: required(program, "--program")?.into(),
        jwt_key: jwt_key.map_or_else(
            || default_key_path(table.as_deref().unwrap_or(DEFAULT_TABLE)),
            PathBuf::from,
        ),
        table: table.unwrap_or_else(|| DEFAULT_TABLE.to_owned()),
    })
}

async fn dynamodb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(RegionProviderChain::default_provider().or_else("us-east-1"));
    // DynamoDB Local accepts any credentials, but the SDK refuses to sign without some.
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        loader = loader.credentials_provider(Credentials::new("test", "test", None, None, "local"));
    }
    aws_sdk_dynamodb::Client::new(&loader.load().await)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(error) => {
            eprintln!("cannot listen for SIGTERM ({error}); stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    eprintln!("shutting down");
}

async fn run(args: Args) -> Result<(), LocalError> {
    loyalty_runtime::init_tracing();
    let client = dynamodb_client(&args.dynamodb).await;
    let template = Template::load(&args.template)?;
    let table_def = match template.tables.as_slice() {
        [table] => table,
        tables => {
            return Err(LocalError::Template(format!(
                "expected exactly one DynamoDB table in {}, found {}",
                args.template.display(),
                tables.len()
            )))
        }
    };

    tables::create_table(&client, table_def, &args.table).await?;
    println!(
        "table {} ({}) ready at {}",
        args.table, table_def.logical_id, args.dynamodb
    );

    let app = Arc::new(App::new(
        DynamoStore::new(client, args.table.as_str()),
        Arc::new(SystemClock),
        AppConfig::default(),
    ));
    publish_default_program(&app, &args.program).await?;
    let api = LocalApi::in_process(&template, app, load_signing_key(&args.jwt_key)?)?;
    println!("routes:");
    for route in api.routes() {
        println!(
            "  {:<6} {:<42} -> {} ({})",
            route.method,
            route.path,
            route.function,
            route.auth.describe()
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    api.serve(listener, shutdown_signal()).await
}

/// Publishes `program` as version 1 unless a program is already active.
async fn publish_default_program(
    app: &App<DynamoStore>,
    program: &std::path::Path,
) -> Result<(), LocalError> {
    let args_program = program;
    let active = app
        .store()
        .active_program()
        .await
        .map_err(|e| LocalError::Program(format!("reading the active program: {e}")))?;
    match active {
        Some(program) => println!(
            "program version {} already active; {} not loaded",
            program.version,
            args_program.display()
        ),
        None => {
            let bytes = std::fs::read(args_program).map_err(|source| LocalError::Read {
                path: args_program.to_owned(),
                source,
            })?;
            let program = app
                .replace_program("local-runner", &bytes)
                .await
                .map_err(|e| {
                    LocalError::Program(format!("{}: {}", args_program.display(), e.message))
                })?;
            println!(
                "published {} as program version {}",
                args_program.display(),
                program.version
            );
        }
    }
    Ok(())
}

mod run_cmd {
    //! `loyalty-local run`.
    use super::*;
    use loyalty_local::runner::{Runner, RunnerConfig};
    use std::collections::HashMap;

    #[derive(Debug)]
    pub struct RunArgs {
        template: PathBuf,
        dynamodb: String,
        sqs: Option<String>,
        listen: SocketAddr,
        program: Option<PathBuf>,
        table: String,
        bin_dir: Option<PathBuf>,
        release: bool,
        build: bool,
        schedules: bool,
        offset: chrono::Duration,
        jwt_key: Option<PathBuf>,
    }

    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<RunArgs, LocalError> {
        let usage = |problem: &str| LocalError::Usage(format!("{problem}\n{USAGE}"));
        let mut out = RunArgs {
            template: PathBuf::from("infra/template.yaml"),
            dynamodb: String::new(),
            sqs: None,
            listen: "127.0.0.1:3000".parse().expect("address"),
            program: None,
            table: DEFAULT_TABLE.to_owned(),
            bin_dir: None,
            release: false,
            build: true,
            schedules: true,
            offset: chrono::Duration::zero(),
            jwt_key: None,
        };
        while let Some(flag) = args.next() {
            match flag.as_str() {
                "--release" => out.release = true,
                "--no-build" => out.build = false,
                "--no-schedules" => out.schedules = false,
                _ => {
                    let value = args
                        .next()
                        .ok_or_else(|| usage(&format!("{flag} needs a value")))?;
                    match flag.as_str() {
                        "--template" => out.template = value.into(),
                        "--dynamodb" => out.dynamodb = value,
                        "--sqs" => out.sqs = Some(value),
                        "--program" => out.program = Some(value.into()),
                        "--table" => out.table = value,
                        "--bin-dir" => out.bin_dir = Some(value.into()),
                        "--jwt-key" => out.jwt_key = Some(value.into()),
                        "--listen" => {
                            out.listen = value.parse().map_err(|_| {
                                usage(&format!("--listen '{value}' is not an IP:PORT address"))
                            })?
                        }
                        "--clock-offset" => {
                            let seconds: i64 = value.parse().map_err(|_| {
                                usage(&format!("--clock-offset '{value}' is not whole seconds"))
                            })?;
                            out.offset = chrono::Duration::try_seconds(seconds)
                                .ok_or_else(|| usage("--clock-offset is out of range"))?;
                        }
                        "--now" => {
                            let now =
                                chrono::DateTime::parse_from_rfc3339(&value).map_err(|e| {
                                    usage(&format!("--now '{value}' is not RFC 3339: {e}"))
                                })?;
                            let offset = now.to_utc() - chrono::Utc::now();
                            out.offset = chrono::Duration::seconds(offset.num_seconds());
                        }
                        _ => return Err(usage(&format!("unknown argument '{flag}'"))),
                    }
                }
            }
        }
        if out.dynamodb.is_empty() {
            return Err(usage("--dynamodb is required"));
        }
        if !out.listen.ip().is_loopback() {
            return Err(usage(&format!(
                "--listen {} is not a loopback address",
                out.listen
            )));
        }
        for url in std::iter::once(&out.dynamodb).chain(out.sqs.iter()) {
            let host = url.strip_prefix("http://").unwrap_or(url);
            if !(host.starts_with("127.0.0.1:") || host.starts_with("localhost:")) {
                return Err(usage(&format!("{url} is not a loopback endpoint")));
            }
        }
        Ok(out)
    }

    pub async fn run(args: RunArgs) -> Result<(), LocalError> {
        let template = Template::load(&args.template)?;
        let key_path = args
            .jwt_key
            .clone()
            .unwrap_or_else(|| default_key_path(&args.table));
        let signing_key = load_signing_key(&key_path)?;
        let profile = if args.release { "release" } else { "debug" };
        if args.build {
            let mut cargo = std::process::Command::new(
                std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()),
            );
            cargo.args(["build", "--bins"]);
            if args.release {
                cargo.arg("--release");
            }
            println!(
                "[local] cargo build --bins{}",
                if args.release { " --release" } else { "" }
            );
            let status = cargo.status()?;
            if !status.success() {
                return Err(LocalError::Usage(format!("cargo build failed ({status})")));
            }
        }
        let bin_dir = args.bin_dir.clone().unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("target"));
            target.join(profile)
        });
        let runner = Runner::start(RunnerConfig {
            template,
            signing_key,
            dynamodb: args.dynamodb.clone(),
            sqs: args.sqs.clone(),
            binaries: HashMap::new(),
            bin_dir,
            table: args.table.clone(),
            queue_prefix: String::new(),
            clock_offset: args.offset,
            schedules: args.schedules,
            rust_log: std::env::var("RUST_LOG").unwrap_or_default(),
        })
        .await?;
        if let Some(program) = &args.program {
            let client = dynamodb_client(&args.dynamodb).await;
            let table = runner
                .table_name("LoyaltyTable")
                .unwrap_or(&args.table)
                .to_owned();
            let app = App::new(
                DynamoStore::new(client, table.as_str()),
                Arc::new(SystemClock),
                AppConfig::default(),
            );
            if let Err(error) = publish_default_program(&app, program).await {
                runner.stop().await;
                return Err(error);
            }
        }
        if !args.offset.is_zero() {
            println!(
                "[local] clock offset {} s: functions and schedules see {}",
                args.offset.num_seconds(),
                runner.now().format("%Y-%m-%dT%H:%M:%SZ")
            );
        }
        println!("[local] routes:");
        for route in runner.routes() {
            println!(
                "  {:<6} {:<42} -> {} ({})",
                route.method,
                route.path,
                route.function,
                route.auth.describe()
            );
        }
        for (function, event) in runner.schedules() {
            println!(
                "  POST   /_local/schedules/{:<26} -> {function} ({})",
                event.name, event.expression
            );
        }
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                runner.stop().await;
                return Err(error.into());
            }
        };
        println!(
            "[local] listening on http://{}; Ctrl-C stops everything",
            listener.local_addr()?
        );
        let served = runner.serve(listener, shutdown_signal()).await;
        runner.stop().await;
        served?;
        println!("[local] stopped");
        Ok(())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1).peekable();
    let result = match argv.peek().map(String::as_str) {
        Some("run") => match run_cmd::parse(argv.skip(1)) {
            Ok(args) => run_cmd::run(args).await,
            Err(error) => Err(error),
        },
        Some("demo") => {
            let rest: Vec<String> = argv.skip(1).collect();
            let api = match rest.as_slice() {
                [] => Ok("http://127.0.0.1:3000".to_owned()),
                [flag, api] if flag == "--api" => Ok(api.clone()),
                _ => Err(LocalError::Usage(USAGE.to_owned())),
            };
            match api {
                Ok(api) => loyalty_local::demo::run(&api)
                    .await
                    .map_err(|e| LocalError::Program(format!("demo failed: {e}"))),
                Err(error) => Err(error),
            }
        }
        _ => match parse_args(argv) {
            Ok(args) => run(args).await,
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(LocalError::Usage(message)) => {
            eprintln!("{}", message.trim_start());
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("loyalty-local: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, LocalError> {
        parse_args(list.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn parses_serve_and_refuses_non_loopback_listen() {
        let base = [
            "serve",
            "--template",
            "t.yaml",
            "--dynamodb",
            "http://127.0.0.1:8000",
            "--program",
            "p.json",
        ];
        let ok = args(&[&base[..], &["--listen", "127.0.0.1:3000"]].concat()).expect("parses");
        assert_eq!(ok.table, DEFAULT_TABLE);
        assert_eq!(ok.listen.port(), 3000);
        assert!(args(&[&base[..], &["--listen", "[::1]:3000", "--table", "t"]].concat()).is_ok());
        assert!(
            matches!(args(&[&base[..], &["--listen", "0.0.0.0:3000"]].concat()), Err(LocalError::Usage(m)) if m.contains("loopback"))
        );
        assert!(args(&base).is_err());
        assert!(args(&["serve", "--bogus"]).is_err());
        assert!(args(&[]).is_err());
    }
}
