//! Published AWS prices (us-east-1) and the per-operation cost model built from measured figures.

/// The prices, written down with the date they are believed current as of.
pub struct Prices {
    pub as_of: &'static str,
    pub region: &'static str,
    /// Lambda arm64, per GB-second of billed duration (first pricing tier).
    pub lambda_arm64_gb_second: f64,
    pub lambda_per_million_requests: f64,
    /// API Gateway HTTP API, per million requests (first 300 million a month).
    pub http_api_per_million: f64,
    /// DynamoDB on-demand, after the November 2024 price cut.
    pub dynamodb_per_million_wru: f64,
    pub dynamodb_per_million_rru: f64,
    /// SQS standard queue, per million requests (after the free tier).
    pub sqs_per_million: f64,
}

pub const PRICES: Prices = Prices {
    as_of: "2024-11-14 (DynamoDB on-demand price cut); Lambda, HTTP API and SQS list prices unchanged since",
    region: "us-east-1",
    lambda_arm64_gb_second: 0.000_013_333_4,
    lambda_per_million_requests: 0.20,
    http_api_per_million: 1.00,
    dynamodb_per_million_wru: 0.625,
    dynamodb_per_million_rru: 0.125,
    sqs_per_million: 0.40,
};

#[derive(Debug, Clone, Copy)]
pub struct Cost {
    /// Lambda milliseconds billed per operation (per member for queue workers).
    pub billed_ms: f64,
    pub lambda_compute: f64,
    pub lambda_requests: f64,
    pub http_api: f64,
    pub dynamodb: f64,
    pub sqs: f64,
}

impl Cost {
    pub fn total(&self) -> f64 {
        self.lambda_compute + self.lambda_requests + self.http_api + self.dynamodb + self.sqs
    }
}

/// What one operation uses, for the cost model.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Lambda duration billed per operation, ms.
    pub billed_ms: f64,
    pub rru: f64,
    /// Write units as AWS bills them (transactional writes at 2 WRU per KB).
    pub wru_billed: f64,
    /// Lambda invocations per operation (1 for HTTP; a share of one for queue workers).
    pub lambda_requests: f64,
    /// HTTP API requests per operation.
    pub http_requests: f64,
    /// SQS requests per operation.
    pub sqs_requests: f64,
}

/// Lambda bills each invocation's duration rounded up to the next ms.
pub fn billed_ms(duration_us: f64) -> f64 {
    (duration_us / 1000.0).ceil().max(1.0)
}

/// Dollars per million operations at `memory_mb`.
pub fn per_million(u: Usage, memory_mb: u32) -> Cost {
    let p = &PRICES;
    let gb_seconds = u.billed_ms / 1000.0 * f64::from(memory_mb) / 1024.0;
    Cost {
        billed_ms: u.billed_ms,
        lambda_compute: gb_seconds * p.lambda_arm64_gb_second * 1e6,
        lambda_requests: u.lambda_requests * p.lambda_per_million_requests,
        http_api: u.http_requests * p.http_api_per_million,
        dynamodb: u.wru_billed * p.dynamodb_per_million_wru + u.rru * p.dynamodb_per_million_rru,
        sqs: u.sqs_requests * p.sqs_per_million,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accrual_at_ten_ms() {
        // 10 ms × 0.25 GB = 0.0025 GB-s → $0.0333 per million of compute; 8 WRU + 2 RRU.
        let cost = per_million(
            Usage {
                billed_ms: billed_ms(9_300.0),
                rru: 2.0,
                wru_billed: 8.0,
                lambda_requests: 1.0,
                http_requests: 1.0,
                sqs_requests: 0.0,
            },
            256,
        );
        assert_eq!(cost.billed_ms, 10.0);
        assert!((cost.lambda_compute - 0.033_333_5).abs() < 1e-6);
        assert!((cost.dynamodb - 5.25).abs() < 1e-9);
        assert!((cost.total() - (0.033_333_5 + 0.2 + 1.0 + 5.25)).abs() < 1e-6);
    }

    #[test]
    fn a_worker_shares_its_message() {
        let cost = per_million(
            Usage {
                billed_ms: 0.5,
                rru: 1.0,
                wru_billed: 4.0,
                lambda_requests: 1.0 / 25.0,
                http_requests: 0.0,
                sqs_requests: 3.0 / 25.0,
            },
            256,
        );
        assert_eq!(cost.http_api, 0.0);
        assert!((cost.sqs - 0.048).abs() < 1e-9);
        assert!((cost.lambda_requests - 0.008).abs() < 1e-9);
    }
}
