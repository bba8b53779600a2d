//! Registered JWT claims checks: validity times (`exp`, `nbf`, `iat`), issuer and audience.
//!
//! These run on claims whose signature already verified. Time arrives as an argument (`now`, unix
//! seconds): this module never reads a clock. Arithmetic on values from a token saturates, so a
//! hostile `exp` near `i64::MAX` cannot overflow into the past.

use serde_json::{Map, Value};

/// How to judge a token's validity times.
///
/// There is deliberately no `Default`: each use site states the clock, the skew and what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRules {
    /// The current time, unix seconds.
    pub now: i64,
    /// Tolerated disagreement between the issuer's clock and ours, in seconds (RFC 7519 sections
    /// 4.1.4 and 4.1.5 allow "some small leeway").
    pub skew_secs: u32,
    /// Refuse tokens without `nbf`.
    pub require_nbf: bool,
    /// Refuse tokens without `iat`.
    pub require_iat: bool,
    /// When set, refuse tokens whose `exp - iat` exceeds this many seconds; `iat` is then required.
    pub max_lifetime_secs: Option<u32>,
}

/// The validity times of a token that passed [`check_time`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeClaims {
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Not before, unix seconds, if present.
    pub nbf: Option<i64>,
    /// Issued at, unix seconds, if present.
    pub iat: Option<i64>,
}

/// Why a token's claims were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    /// A required claim is absent.
    #[error("the claim `{0}` is missing")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type; times must be integers (RFC 7519 section 2, NumericDate,
    /// restricted here to integers so `1e9`, `1.5` and `"1"` are refused).
    #[error("the claim `{0}` has the wrong type or value")]
    InvalidClaim(&'static str),
    /// `now` is at or after `exp` plus the skew (RFC 7519 section 4.1.4).
    #[error("the token expired at `{exp}` (now {now})")]
    Expired {
        /// The token's `exp`.
        exp: i64,
        /// The time of the check.
        now: i64,
    },
    /// `now` plus the skew is before `nbf` (RFC 7519 section 4.1.5).
    #[error("the token is not valid before `{nbf}` (now {now})")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: i64,
        /// The time of the check.
        now: i64,
    },
    /// `iat` is after `now` plus the skew (RFC 7519 section 4.1.6): a clock far off, or a token
    /// minted to outlive its issuer's limits.
    #[error("the token claims to be issued at `{iat}`, in the future (now {now})")]
    IssuedInFuture {
        /// The token's `iat`.
        iat: i64,
        /// The time of the check.
        now: i64,
    },
    /// `exp - iat` is longer than allowed.
    #[error("the token lives `{lifetime}` seconds, more than the limit of {max}")]
    LifetimeTooLong {
        /// `exp - iat`.
        lifetime: i64,
        /// The limit.
        max: u32,
    },
    /// `iss` is not the expected issuer (RFC 7519 section 4.1.1).
    #[error("the issuer `{0}` is not the expected one")]
    WrongIssuer(String),
    /// `aud` does not name us (RFC 7519 section 4.1.3).
    #[error("the token is not addressed to this audience")]
    WrongAudience,
}

impl ClaimsError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            ClaimsError::MissingClaim(_) => "token.missing_claim",
            ClaimsError::InvalidClaim(_) => "token.invalid_claim",
            ClaimsError::Expired { .. } => "token.expired",
            ClaimsError::NotYetValid { .. } => "token.not_yet_valid",
            ClaimsError::IssuedInFuture { .. } => "token.issued_in_future",
            ClaimsError::LifetimeTooLong { .. } => "token.lifetime_too_long",
            ClaimsError::WrongIssuer(_) => "token.wrong_issuer",
            ClaimsError::WrongAudience => "token.wrong_audience",
        }
    }
}

/// Checks `exp` (always required), `nbf` and `iat` against `rules`, and returns them.
pub fn check_time(claims: &Map<String, Value>, rules: &TimeRules) -> Result<TimeClaims, ClaimsError> {
    let skew = i64::from(rules.skew_secs);
    // A token without `exp` never expires; we accept none of those.
    let exp = integer_claim(claims, "exp")?.ok_or(ClaimsError::MissingClaim("exp"))?;
    let nbf = integer_claim(claims, "nbf")?;
    let iat = integer_claim(claims, "iat")?;
    if rules.require_nbf && nbf.is_none() {
        return Err(ClaimsError::MissingClaim("nbf"));
    }
    if (rules.require_iat || rules.max_lifetime_secs.is_some()) && iat.is_none() {
        return Err(ClaimsError::MissingClaim("iat"));
    }
    // RFC 7519 section 4.1.4: valid only while now < exp; the skew extends that.
    if rules.now >= exp.saturating_add(skew) {
        return Err(ClaimsError::Expired { exp, now: rules.now });
    }
    // RFC 7519 section 4.1.5: valid only once now >= nbf; the skew brings that forward.
    if let Some(nbf) = nbf {
        if rules.now.saturating_add(skew) < nbf {
            return Err(ClaimsError::NotYetValid { nbf, now: rules.now });
        }
    }
    if let Some(iat) = iat {
        if iat > rules.now.saturating_add(skew) {
            return Err(ClaimsError::IssuedInFuture { iat, now: rules.now });
        }
        if let Some(max) = rules.max_lifetime_secs {
            let lifetime = exp.saturating_sub(iat);
            if lifetime > i64::from(max) {
                return Err(ClaimsError::LifetimeTooLong { lifetime, max });
            }
        }
    }
    Ok(TimeClaims { exp, nbf, iat })
}

/// Checks that `iss` is exactly `expected` (RFC 7519 section 4.1.1; compared as case-sensitive
/// strings, no normalisation, per section 2 StringOrURI).
pub fn check_issuer(claims: &Map<String, Value>, expected: &str) -> Result<(), ClaimsError> {
    match claims.get("iss") {
        None => Err(ClaimsError::MissingClaim("iss")),
        Some(Value::String(iss)) if iss == expected => Ok(()),
        Some(Value::String(iss)) => Err(ClaimsError::WrongIssuer(iss.clone())),
        Some(_) => Err(ClaimsError::InvalidClaim("iss")),
    }
}

/// Checks that `aud`, a string or an array of strings (RFC 7519 section 4.1.3), contains exactly
/// `expected`. An array with a non-string element is refused as a whole rather than skipped.
pub fn check_audience(claims: &Map<String, Value>, expected: &str) -> Result<(), ClaimsError> {
    let found = match claims.get("aud") {
        None => return Err(ClaimsError::MissingClaim("aud")),
        Some(Value::String(aud)) => aud == expected,
        Some(Value::Array(items)) => {
            let mut found = false;
            for item in items {
                found |= item.as_str().ok_or(ClaimsError::InvalidClaim("aud"))? == expected;
            }
            found
        }
        Some(_) => return Err(ClaimsError::InvalidClaim("aud")),
    };
    if found {
        Ok(())
    } else {
        Err(ClaimsError::WrongAudience)
    }
}

/// An optional claim that, when present, must be a JSON integer in `i64` range.
pub(crate) fn integer_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, ClaimsError> {
    match claims.get(name) {
        None => Ok(None),
        // `as_i64` is `None` for floats (`1.0`, `1e9`) and for integers beyond `i64`.
        Some(value) => value.as_i64().map(Some).ok_or(ClaimsError::InvalidClaim(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn rules() -> TimeRules {
        TimeRules { now: NOW, skew_secs: 30, require_nbf: true, require_iat: true, max_lifetime_secs: Some(900) }
    }

    fn check(claims: Value, rules: TimeRules, expected: Result<(), ClaimsError>) {
        let map = claims.as_object().cloned().unwrap_or_default();
        assert_eq!(check_time(&map, &rules).map(|_| ()), expected, "{claims}");
    }

    #[test]
    fn validity_window_with_skew() {
        let ok = json!({"iat": NOW, "nbf": NOW, "exp": NOW + 900});
        check(ok.clone(), rules(), Ok(()));
        check(
            json!({"iat": NOW - 900, "nbf": NOW - 900, "exp": NOW - 30}),
            rules(),
            Err(ClaimsError::Expired { exp: NOW - 30, now: NOW }),
        );
        check(json!({"iat": NOW - 900, "nbf": NOW - 900, "exp": NOW - 29}), rules(), Ok(()));
        check(
            json!({"iat": NOW, "nbf": NOW + 31, "exp": NOW + 900}),
            rules(),
            Err(ClaimsError::NotYetValid { nbf: NOW + 31, now: NOW }),
        );
        check(json!({"iat": NOW, "nbf": NOW + 30, "exp": NOW + 900}), rules(), Ok(()));
        check(
            json!({"iat": NOW + 31, "nbf": NOW, "exp": NOW + 900}),
            rules(),
            Err(ClaimsError::IssuedInFuture { iat: NOW + 31, now: NOW }),
        );
        check(
            json!({"iat": NOW, "nbf": NOW, "exp": NOW + 901}),
            rules(),
            Err(ClaimsError::LifetimeTooLong { lifetime: 901, max: 900 }),
        );
        check(
            json!({"iat": i64::MIN, "nbf": NOW, "exp": i64::MAX}),
            rules(),
            Err(ClaimsError::LifetimeTooLong { lifetime: i64::MAX, max: 900 }),
        );
    }

    #[test]
    fn times_must_be_present_integers() {
        check(json!({"iat": NOW, "nbf": NOW}), rules(), Err(ClaimsError::MissingClaim("exp")));
        check(json!({"iat": NOW, "exp": NOW + 60}), rules(), Err(ClaimsError::MissingClaim("nbf")));
        check(json!({"nbf": NOW, "exp": NOW + 60}), rules(), Err(ClaimsError::MissingClaim("iat")));
        let lenient = TimeRules { require_nbf: false, require_iat: false, max_lifetime_secs: None, ..rules() };
        check(json!({"exp": NOW + 60}), lenient, Ok(()));
        check(json!({"exp": "1900000000"}), lenient, Err(ClaimsError::InvalidClaim("exp")));
        check(json!({"exp": 1_900_000_000.0}), lenient, Err(ClaimsError::InvalidClaim("exp")));
        check(json!({"exp": 1.9e9}), lenient, Err(ClaimsError::InvalidClaim("exp")));
        check(json!({"exp": u64::MAX}), lenient, Err(ClaimsError::InvalidClaim("exp")));
        check(json!({"exp": NOW + 60, "nbf": null}), lenient, Err(ClaimsError::InvalidClaim("nbf")));
        check(json!({"exp": NOW + 60, "iat": [NOW]}), lenient, Err(ClaimsError::InvalidClaim("iat")));
    }

    #[test]
    fn issuer_and_audience() {
        let claims = |value: Value| value.as_object().cloned().unwrap_or_default();
        let iss = "https://mandate.example";
        assert_eq!(check_issuer(&claims(json!({"iss": iss})), iss), Ok(()));
        assert_eq!(
            check_issuer(&claims(json!({"iss": "https://Mandate.example"})), iss),
            Err(ClaimsError::WrongIssuer("https://Mandate.example".into()))
        );
        assert_eq!(check_issuer(&claims(json!({})), iss), Err(ClaimsError::MissingClaim("iss")));
        assert_eq!(check_issuer(&claims(json!({"iss": [iss]})), iss), Err(ClaimsError::InvalidClaim("iss")));

        let aud = "mandate";
        assert_eq!(check_audience(&claims(json!({"aud": aud})), aud), Ok(()));
        assert_eq!(check_audience(&claims(json!({"aud": ["other", aud]})), aud), Ok(()));
        assert_eq!(check_audience(&claims(json!({"aud": ["other"]})), aud), Err(ClaimsError::WrongAudience));
        assert_eq!(check_audience(&claims(json!({"aud": []})), aud), Err(ClaimsError::WrongAudience));
        assert_eq!(check_audience(&claims(json!({"aud": "Mandate"})), aud), Err(ClaimsError::WrongAudience));
        assert_eq!(check_audience(&claims(json!({"aud": [aud, 7]})), aud), Err(ClaimsError::InvalidClaim("aud")));
        assert_eq!(check_audience(&claims(json!({"aud": {"a": aud}})), aud), Err(ClaimsError::InvalidClaim("aud")));
        assert_eq!(check_audience(&claims(json!({})), aud), Err(ClaimsError::MissingClaim("aud")));
    }
}
