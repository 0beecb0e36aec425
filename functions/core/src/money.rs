//! Money is an integer count of minor units in an ISO 4217 currency; no floats anywhere.

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorCode};

/// Active ISO 4217 codes. Parsing against the list rejects typos like "USDD" or "usd".
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWL",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        match ISO_4217.iter().find(|code| **code == raw) {
            Some(code) => {
                let bytes = code.as_bytes();
                Ok(Self([bytes[0], bytes[1], bytes[2]]))
            }
            None => Err(ApiError::invalid(
                "currency",
                format!("'{raw}' is not an ISO 4217 currency code"),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        // Built only from entries of ISO_4217, which are ASCII.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// The largest amount accepted anywhere: ten trillion minor units. Far above any real order, and
/// far enough below `i64::MAX` that multiplying by points-per-unit and multipliers cannot overflow
/// the 128-bit intermediate arithmetic used by earning rules.
pub const MAX_MINOR: i64 = 10_000_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    /// A positive amount no larger than [`MAX_MINOR`].
    pub fn positive(self, field: &str) -> Result<Self, ApiError> {
        if self.minor <= 0 {
            return Err(ApiError::invalid(
                field,
                format!("{field} must be greater than zero"),
            ));
        }
        if self.minor > MAX_MINOR {
            return Err(ApiError::invalid(
                field,
                format!("{field} is larger than {MAX_MINOR} minor units"),
            ));
        }
        Ok(self)
    }

    pub fn in_currency(self, expected: Currency, field: &str) -> Result<Self, ApiError> {
        if self.currency != expected {
            return Err(ApiError::new(
                ErrorCode::CurrencyMismatch,
                format!(
                    "{field} is in {} but the program runs in {}",
                    self.currency.as_str(),
                    expected.as_str()
                ),
            )
            .with_details(serde_json::json!({ "field": field, "expected": expected.as_str() })));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_must_be_iso_4217_upper_case() {
        assert_eq!(
            Currency::parse("USD")
                .map(|c| c.as_str().to_owned())
                .ok()
                .as_deref(),
            Some("USD")
        );
        assert!(Currency::parse("usd").is_err());
        assert!(Currency::parse("ABC").is_err());
        assert!(Currency::parse("USDD").is_err());
    }

    #[test]
    fn money_parses_strictly() {
        let ok: Money =
            serde_json::from_str(r#"{"minor": 1299, "currency": "EUR"}"#).expect("valid");
        assert_eq!(ok.minor, 1299);
        assert!(serde_json::from_str::<Money>(r#"{"minor": 12.5, "currency": "EUR"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"minor": "12", "currency": "EUR"}"#).is_err());
        assert!(
            serde_json::from_str::<Money>(r#"{"minor": 1, "currency": "EUR", "x": 1}"#).is_err()
        );
        assert!(serde_json::from_str::<Money>(
            r#"{"minor": 99999999999999999999, "currency": "EUR"}"#
        )
        .is_err());
        let usd = Currency::parse("USD").expect("usd");
        assert!(Money::new(0, usd).positive("amount").is_err());
        assert!(Money::new(-5, usd).positive("amount").is_err());
        assert!(Money::new(MAX_MINOR + 1, usd).positive("amount").is_err());
    }
}
