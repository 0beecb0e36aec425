//! Runs the SAM template's HTTP API on a developer machine: the table is created in DynamoDB
//! Local from the template, and requests reach the functions' handlers in-process through the
//! same API Gateway v2 events Lambda would deliver.

pub mod demo;
pub mod error;
pub mod gateway;
pub mod runner;
pub mod runtime;
pub mod schedule;
pub mod server;
pub mod sqs;
pub mod tables;
pub mod template;
pub mod wiring;

pub use error::LocalError;
pub use server::LocalApi;
pub use template::{FunctionDef, HttpRoute, TableDef, Template};
