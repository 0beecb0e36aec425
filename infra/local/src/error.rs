//! Everything that can stop the local runner. Per-request failures never surface here: the
//! gateway answers them with an API Gateway-style status instead.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("template is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template: {0}")]
    Template(String),
    #[error("function {logical_id}: binary '{binary}' is not a known loyalty function")]
    UnknownFunction { logical_id: String, binary: String },
    #[error("cannot build the API Gateway event: {0}")]
    Event(String),
    #[error("DynamoDB: {0}")]
    Dynamo(String),
    #[error("program: {0}")]
    Program(String),
    #[error("JWT signing key: {0}")]
    SigningKey(String),
    #[error("server: {0}")]
    Server(#[from] std::io::Error),
    #[error("{0}")]
    Usage(String),
}
