//! Reading what the client sent: size limits first, then JSON, then strict query parameters.

use std::collections::HashMap;

use lambda_http::{Body, Request};
use loyalty_core::{ApiError, ErrorCode};
use serde_json::Value;

pub(crate) const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
/// Program documents are larger, but both copies (active and history) must fit DynamoDB items.
pub(crate) const PROGRAM_BODY_LIMIT: usize = 256 * 1024;

pub(crate) fn raw_body(request: &Request, limit: usize) -> Result<&[u8], ApiError> {
    if let Some(content_type) = request.headers().get(http::header::CONTENT_TYPE) {
        let is_json = content_type
            .to_str()
            .is_ok_and(|t| t.to_ascii_lowercase().contains("json"));
        if !is_json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as application/json",
            ));
        }
    }
    let bytes: &[u8] = match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    };
    if bytes.len() > limit {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than {limit} bytes"),
        )
        .with_details(serde_json::json!({ "limit": limit })));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "a JSON body is required",
        ));
    }
    Ok(bytes)
}

pub(crate) fn json_body(request: &Request, limit: usize) -> Result<Value, ApiError> {
    let bytes = raw_body(request, limit)?;
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "the body must be a JSON object",
        ));
    }
    Ok(value)
}

/// The query parameters, refusing any the route does not know: a misspelt `dry_run` must not
/// silently turn a simulation into a real accrual.
pub(crate) fn query(
    request: &Request,
    known: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let mut params = HashMap::new();
    for (name, value) in crate::query_parameters(request) {
        if !known.contains(&name.as_str()) {
            return Err(ApiError::invalid(
                &name,
                format!("unknown query parameter '{name}'"),
            ));
        }
        params.insert(name, value);
    }
    Ok(params)
}

/// The optional `limit` of a list route, as a number; the service checks its range.
pub(crate) fn limit(params: &HashMap<String, String>) -> Result<Option<u32>, ApiError> {
    params
        .get("limit")
        .map(|raw| {
            raw.parse::<u32>()
                .map_err(|_| ApiError::invalid("limit", "limit must be a whole number"))
        })
        .transpose()
}
