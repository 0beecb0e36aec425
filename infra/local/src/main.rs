//! `loyalty-local serve`: the template's HTTP API on a loopback port, backed by DynamoDB Local.

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
use loyalty_local::{tables, LocalApi, LocalError, Template};

const USAGE: &str = "usage: loyalty-local serve --template PATH --dynamodb URL --listen ADDR --program PATH [--table NAME]";
const DEFAULT_TABLE: &str = "loyalty-local";

#[derive(Debug)]
struct Args {
    template: PathBuf,
    dynamodb: String,
    listen: SocketAddr,
    program: PathBuf,
    table: String,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, LocalError> {
    let usage = |problem: &str| LocalError::Usage(format!("{problem}\n{USAGE}"));
    match args.next().as_deref() {
        Some("serve") => {}
        Some("-h" | "--help") | None => return Err(usage("")),
        Some(other) => return Err(usage(&format!("unknown command '{other}'"))),
    }
    let (mut template, mut dynamodb, mut listen, mut program, mut table) =
        (None, None, None, None, None);
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--template" => &mut template,
            "--dynamodb" => &mut dynamodb,
            "--listen" => &mut listen,
            "--program" => &mut program,
            "--table" => &mut table,
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
    // The API has no authentication locally; it must not be reachable from other machines.
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
    loyalty_http::init_tracing();
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

    let client = dynamodb_client(&args.dynamodb).await;
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
    let active = app
        .store()
        .active_program()
        .await
        .map_err(|e| LocalError::Program(format!("reading the active program: {e}")))?;
    match active {
        Some(program) => println!(
            "program version {} already active; {} not loaded",
            program.version,
            args.program.display()
        ),
        None => {
            let bytes = std::fs::read(&args.program).map_err(|source| LocalError::Read {
                path: args.program.clone(),
                source,
            })?;
            let program = app.replace_program(&bytes).await.map_err(|e| {
                LocalError::Program(format!("{}: {}", args.program.display(), e.message))
            })?;
            println!(
                "published {} as program version {}",
                args.program.display(),
                program.version
            );
        }
    }

    let api = LocalApi::new(&template, app)?;
    println!("routes:");
    for route in api.routes() {
        println!(
            "  {:<6} {:<42} -> {}",
            route.method, route.path, route.function
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    api.serve(listener, shutdown_signal()).await
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match parse_args(std::env::args().skip(1)) {
        Ok(args) => run(args).await,
        Err(error) => Err(error),
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
