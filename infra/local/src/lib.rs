//! Runs the SAM template's HTTP API on a developer machine: the table is created in DynamoDB
//! Local from the template, and requests pass one local API Gateway (routing, the JWT
//! authorizer, payload limit) that invokes the functions' handlers in-process or their real
//! binaries, with the same API Gateway v2 events Lambda would deliver.

pub mod demo;
pub mod error;
pub mod event;
pub mod gateway;
pub mod in_process;
pub mod jwt;
pub mod runner;
pub mod runtime;
pub mod schedule;
pub mod sqs;
pub mod stream;
pub mod stream_poller;
pub mod tables;
pub mod template;
pub mod wiring;

pub use error::LocalError;
pub use gateway::{Gateway, Invoker};
pub use in_process::LocalApi;
pub use template::{FunctionDef, HttpRoute, RouteAuth, TableDef, Template};
