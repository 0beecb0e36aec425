//! Creates the template's DynamoDB table in DynamoDB Local, keyed and indexed exactly as
//! CloudFormation would create it, so queries that need an index fail locally too if it is
//! missing.

use std::time::Duration;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    LocalSecondaryIndex, Projection, ProjectionType, ScalarAttributeType, StreamSpecification,
    StreamViewType, TableStatus, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

use crate::error::LocalError;
use crate::template::{IndexDef, KeyDef, TableDef};

const ACTIVE_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Creates `table_name` from `def` (with its stream, which the outbox reads) unless it exists,
/// waits until it and its indexes are ACTIVE, then turns on TTL. Always on-demand: capacity settings mean nothing locally.
pub async fn create_table(
    client: &Client,
    def: &TableDef,
    table_name: &str,
) -> Result<(), LocalError> {
    let attributes = def
        .attribute_definitions
        .iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(&a.name)
                .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                .build()
                .map_err(build_error)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let global = def
        .global_secondary_indexes
        .iter()
        .map(|index| {
            GlobalSecondaryIndex::builder()
                .index_name(&index.name)
                .set_key_schema(Some(key_schema(&index.key_schema)?))
                .projection(projection(index))
                .build()
                .map_err(build_error)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let local = def
        .local_secondary_indexes
        .iter()
        .map(|index| {
            LocalSecondaryIndex::builder()
                .index_name(&index.name)
                .set_key_schema(Some(key_schema(&index.key_schema)?))
                .projection(projection(index))
                .build()
                .map_err(build_error)
        })
        .collect::<Result<Vec<_>, _>>()?;

    let stream = def
        .stream_view_type
        .as_deref()
        .map(|view| {
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view))
                .build()
                .map_err(build_error)
        })
        .transpose()?;
    let created = client
        .create_table()
        .table_name(table_name)
        .set_attribute_definitions(Some(attributes))
        .set_key_schema(Some(key_schema(&def.key_schema)?))
        .set_global_secondary_indexes((!global.is_empty()).then_some(global))
        .set_local_secondary_indexes((!local.is_empty()).then_some(local))
        .billing_mode(BillingMode::PayPerRequest)
        .set_stream_specification(stream)
        .send()
        .await;
    match created {
        Ok(_) => {}
        // A table left from an earlier run (or created by a test) is reused as it is.
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(error) => {
            return Err(LocalError::Dynamo(format!(
                "creating table {table_name}: {}",
                DisplayErrorContext(&error)
            )))
        }
    }
    wait_until_active(client, table_name).await?;

    if let Some(attribute) = &def.ttl_attribute {
        let spec = TimeToLiveSpecification::builder()
            .attribute_name(attribute)
            .enabled(true)
            .build()
            .map_err(build_error)?;
        // Fails when TTL is already on (a reused table); either way the table is usable.
        if let Err(error) = client
            .update_time_to_live()
            .table_name(table_name)
            .time_to_live_specification(spec)
            .send()
            .await
        {
            tracing::debug!(error = %DisplayErrorContext(&error), "UpdateTimeToLive ignored");
        }
    }
    Ok(())
}

async fn wait_until_active(client: &Client, table_name: &str) -> Result<(), LocalError> {
    let deadline = tokio::time::Instant::now() + ACTIVE_TIMEOUT;
    loop {
        let described = client
            .describe_table()
            .table_name(table_name)
            .send()
            .await
            .map_err(|e| {
                LocalError::Dynamo(format!(
                    "describing table {table_name}: {}",
                    DisplayErrorContext(&e)
                ))
            })?;
        if let Some(table) = described.table() {
            let indexes_active = table
                .global_secondary_indexes()
                .iter()
                .all(|index| index.index_status() == Some(&IndexStatus::Active));
            if table.table_status() == Some(&TableStatus::Active) && indexes_active {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(LocalError::Dynamo(format!(
                "table {table_name} was not ACTIVE after {ACTIVE_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn key_schema(keys: &[KeyDef]) -> Result<Vec<KeySchemaElement>, LocalError> {
    keys.iter()
        .map(|key| {
            KeySchemaElement::builder()
                .attribute_name(&key.name)
                .key_type(KeyType::from(key.key_type.as_str()))
                .build()
                .map_err(build_error)
        })
        .collect()
}

fn projection(index: &IndexDef) -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::from(index.projection_type.as_str()))
        .set_non_key_attributes(
            (!index.non_key_attributes.is_empty()).then(|| index.non_key_attributes.clone()),
        )
        .build()
}

fn build_error(error: aws_sdk_dynamodb::error::BuildError) -> LocalError {
    LocalError::Dynamo(format!("invalid table definition: {error}"))
}
