//! All configuration, read once at start from the environment (SPEC §2).
//! After `Config::from_env` returns nothing reads `std::env` again; tests build a
//! `Config` from a map with `Config::from_lookup` and change fields directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::domain::rate::Rate;

pub const DEFAULT_DATA_DIR: &str = "./.data";
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_WEBHOOK_TOLERANCE_SECS: u64 = 300;
pub const DEFAULT_POOL_SIZE: usize = 10;
pub const DEFAULT_RECONCILE_INTERVAL_SECS: u64 = 300;
pub const DEFAULT_RECONCILE_AFTER_SECS: u64 = 600;
pub const DEFAULT_IDEMPOTENCY_TTL_SECS: u64 = 86_400;
pub const DEFAULT_ADMIN_FAILURES: &str = "10/min";
pub const DEFAULT_ORDERS: &str = "20/min";
pub const DEFAULT_FAILED_PAYMENTS: &str = "5/hour";
pub const DEFAULT_CREDITS_API: &str = "600/min";

#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

/// Which secret key mode Stripe is configured in; events must agree on `livemode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    Test,
    Live,
}

#[derive(Debug, Clone)]
pub struct StripeConfig {
    pub secret_key: SecretString,
    pub publishable_key: Option<String>,
    /// `None`: Stripe's own API.
    pub api_base: Option<Url>,
}

impl StripeConfig {
    pub fn key_mode(&self) -> Option<KeyMode> {
        let key = self.secret_key.expose_secret();
        if key.starts_with("sk_live_") || key.starts_with("rk_live_") {
            Some(KeyMode::Live)
        } else if key.starts_with("sk_test_") || key.starts_with("rk_test_") {
            Some(KeyMode::Test)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: Option<SecretString>,
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
    pub public_base_url: Option<Url>,
    /// `None`: the built-in sandbox provider.
    pub stripe: Option<StripeConfig>,
    /// Empty: none configured (the sandbox then uses a generated one kept in the database).
    pub webhook_secrets: Vec<SecretString>,
    pub webhook_tolerance: Duration,
    pub admin_password: Option<SecretString>,
    pub pool_size: usize,
    /// Zero disables the background loop.
    pub reconcile_interval: Duration,
    pub reconcile_after: Duration,
    pub idempotency_ttl: Duration,
    pub log_filter: String,
    pub log_json: bool,
    /// Failed operator logins per client address before even the right password is
    /// refused until the window passes (SPEC §2 RATE_LIMIT_ADMIN_FAILURES).
    pub admin_failures: Rate,
    /// New orders per client address (RATE_LIMIT_ORDERS), API and checkout alike.
    pub orders_per_client: Rate,
    /// Failed payments per e-mail before new orders for it are refused
    /// (RATE_LIMIT_FAILED_PAYMENTS), counted from the database.
    pub failed_payments: Rate,
    /// Credits API requests per key (RATE_LIMIT_CREDITS_API), per instance.
    pub credits_api_per_key: Rate,
    /// Proxies whose X-Forwarded-For is believed (TRUSTED_PROXIES).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where notifications go (MERCHANT_WEBHOOK_URL and _SECRET); `None`: none written.
    pub merchant_webhook: Option<MerchantWebhook>,
    /// The shop as shoppers see it (SHOP_NAME, SUPPORT_EMAIL).
    pub shop: Shop,
    /// PACKS_FILE: the merchant's packs, applied at start; `None`: the built-in ones.
    pub packs_file: Option<PathBuf>,
    /// Whether Stripe is asked to e-mail its own receipt (`receipt_email` on the
    /// PaymentIntent; STRIPE_RECEIPT_EMAIL, on unless `false`).
    pub stripe_receipts: bool,
}

/// What the shopper's pages call the shop, and whom to ask for help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shop {
    pub name: String,
    pub support_email: Option<String>,
}

impl Default for Shop {
    fn default() -> Self {
        Shop {
            name: DEFAULT_SHOP_NAME.to_owned(),
            support_email: None,
        }
    }
}

pub const DEFAULT_SHOP_NAME: &str = "paidonce credits";

#[derive(Debug, Clone)]
pub struct MerchantWebhook {
    pub url: Url,
    pub secret: SecretString,
}

/// SHOP_NAME (short, printable) and SUPPORT_EMAIL (an address).
fn shop(name: Option<String>, support: Option<String>) -> Result<Shop, ConfigError> {
    let name = match name {
        None => DEFAULT_SHOP_NAME.to_owned(),
        Some(n) if n.chars().count() <= 80 && !n.chars().any(char::is_control) => n,
        Some(n) => {
            return Err(ConfigError {
                variable: "SHOP_NAME",
                message: format!(
                    "expected at most 80 characters without control characters, got {n:?}"
                ),
            });
        }
    };
    let support_email = support
        .map(|v| {
            crate::domain::email::Email::parse(&v)
                .map(|e| e.as_str().to_owned())
                .map_err(|_| ConfigError {
                    variable: "SUPPORT_EMAIL",
                    message: format!("expected an e-mail address, got {v:?}"),
                })
        })
        .transpose()?;
    Ok(Shop {
        name,
        support_email,
    })
}

/// MERCHANT_WEBHOOK_URL must be http(s) and comes with its secret (SPEC §9).
fn merchant_webhook(
    url: Option<String>,
    secret: Option<String>,
) -> Result<Option<MerchantWebhook>, ConfigError> {
    let Some(url) = url else {
        return Ok(None);
    };
    let url = parse_url("MERCHANT_WEBHOOK_URL", &url)?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError {
            variable: "MERCHANT_WEBHOOK_URL",
            message: format!(
                "expected an http:// or https:// URL, got {:?}",
                url.as_str()
            ),
        });
    }
    let secret = secret.ok_or_else(|| ConfigError {
        variable: "MERCHANT_WEBHOOK_SECRET",
        message: "is required with MERCHANT_WEBHOOK_URL: notifications are signed with it".into(),
    })?;
    Ok(Some(MerchantWebhook {
        url,
        secret: SecretString::from(secret),
    }))
}

impl Config {
    /// Whether changes write notifications (only when they will be sent).
    pub fn outbox(&self) -> crate::notify::Outbox {
        crate::notify::Outbox {
            enabled: self.merchant_webhook.is_some(),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the configuration from any name → value lookup; blank values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let secs = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            match var(name) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => v
                    .parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|_| ConfigError {
                        variable: name,
                        message: format!("expected a whole number of seconds, got {v:?}"),
                    }),
            }
        };

        let bind_text = var("PAIDONCE_BIND").unwrap_or_else(|| DEFAULT_BIND.to_owned());
        let bind = bind_text.parse::<SocketAddr>().map_err(|_| ConfigError {
            variable: "PAIDONCE_BIND",
            message: format!("expected host:port such as 127.0.0.1:8080, got {bind_text:?}"),
        })?;
        let public_base_url = var("PUBLIC_BASE_URL")
            .map(|v| parse_url("PUBLIC_BASE_URL", &v))
            .transpose()?;

        let stripe = match var("STRIPE_SECRET_KEY") {
            None => None,
            Some(key) => Some(StripeConfig {
                secret_key: SecretString::from(key),
                publishable_key: var("STRIPE_PUBLISHABLE_KEY"),
                api_base: var("STRIPE_API_BASE")
                    .map(|v| parse_url("STRIPE_API_BASE", &v))
                    .transpose()?,
            }),
        };
        let webhook_secrets = var("STRIPE_WEBHOOK_SECRET")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| SecretString::from(s.to_owned()))
                    .collect()
            })
            .unwrap_or_default();

        let pool_size = match var("DATABASE_POOL_SIZE") {
            None => DEFAULT_POOL_SIZE,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| ConfigError {
                    variable: "DATABASE_POOL_SIZE",
                    message: format!("expected a number from 1 to 1000, got {v:?}"),
                })?,
        };

        let rate = |name: &'static str, default: &str| -> Result<Rate, ConfigError> {
            var(name)
                .unwrap_or_else(|| default.to_owned())
                .parse::<Rate>()
                .map_err(|message| ConfigError {
                    variable: name,
                    message,
                })
        };

        Ok(Config {
            database_url: var("DATABASE_URL").map(SecretString::from),
            data_dir: PathBuf::from(
                var("PAIDONCE_DATA_DIR").unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned()),
            ),
            bind,
            public_base_url,
            stripe,
            webhook_secrets,
            webhook_tolerance: secs("WEBHOOK_TOLERANCE_SECS", DEFAULT_WEBHOOK_TOLERANCE_SECS)?,
            admin_password: var("ADMIN_PASSWORD").map(SecretString::from),
            pool_size,
            reconcile_interval: secs("RECONCILE_INTERVAL_SECS", DEFAULT_RECONCILE_INTERVAL_SECS)?,
            reconcile_after: secs("RECONCILE_AFTER_SECS", DEFAULT_RECONCILE_AFTER_SECS)?,
            idempotency_ttl: secs("IDEMPOTENCY_TTL_SECS", DEFAULT_IDEMPOTENCY_TTL_SECS)?,
            log_filter: var("RUST_LOG").unwrap_or_else(|| "info".to_owned()),
            log_json: var("LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("json")),
            admin_failures: rate("RATE_LIMIT_ADMIN_FAILURES", DEFAULT_ADMIN_FAILURES)?,
            orders_per_client: rate("RATE_LIMIT_ORDERS", DEFAULT_ORDERS)?,
            failed_payments: rate("RATE_LIMIT_FAILED_PAYMENTS", DEFAULT_FAILED_PAYMENTS)?,
            credits_api_per_key: rate("RATE_LIMIT_CREDITS_API", DEFAULT_CREDITS_API)?,
            trusted_proxies: crate::web::client::parse_trusted(
                &var("TRUSTED_PROXIES").unwrap_or_default(),
            )
            .map_err(|message| ConfigError {
                variable: "TRUSTED_PROXIES",
                message,
            })?,
            merchant_webhook: merchant_webhook(
                var("MERCHANT_WEBHOOK_URL"),
                var("MERCHANT_WEBHOOK_SECRET"),
            )?,
            shop: shop(var("SHOP_NAME"), var("SUPPORT_EMAIL"))?,
            packs_file: var("PACKS_FILE").map(PathBuf::from),
            stripe_receipts: match var("STRIPE_RECEIPT_EMAIL").as_deref() {
                None | Some("true" | "1" | "on" | "yes") => true,
                Some("false" | "0" | "off" | "no") => false,
                Some(other) => {
                    return Err(ConfigError {
                        variable: "STRIPE_RECEIPT_EMAIL",
                        message: format!("expected true or false, got {other:?}"),
                    });
                }
            },
        })
    }

    /// `serve` must not run against real Stripe without a way to verify its webhooks.
    pub fn check_serve(&self) -> Result<(), ConfigError> {
        if self.stripe.is_some() && self.webhook_secrets.is_empty() {
            return Err(ConfigError {
                variable: "STRIPE_WEBHOOK_SECRET",
                message: "STRIPE_SECRET_KEY is set but STRIPE_WEBHOOK_SECRET is not; set it to the whsec_… \
                          secret of your webhook endpoint (or the one `stripe listen` prints)"
                    .to_owned(),
            });
        }
        Ok(())
    }

    pub fn is_sandbox(&self) -> bool {
        self.stripe.is_none()
    }
}

fn parse_url(variable: &'static str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|e| ConfigError {
        variable,
        message: format!("not a URL ({e}): {value:?}"),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError {
            variable,
            message: format!("expected an http(s) URL, got {value:?}"),
        });
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_mirror_the_spec() {
        let c = config(&[]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./.data"));
        assert!(c.is_sandbox());
        assert_eq!(c.webhook_tolerance, Duration::from_secs(300));
        assert_eq!(c.pool_size, 10);
        assert_eq!(c.reconcile_interval, Duration::from_secs(300));
        assert_eq!(c.reconcile_after, Duration::from_secs(600));
        assert_eq!(c.idempotency_ttl, Duration::from_secs(86_400));
        assert!(c.check_serve().is_ok());
    }

    #[test]
    fn webhook_secrets_split_on_commas() {
        let c = config(&[("STRIPE_WEBHOOK_SECRET", "whsec_a, whsec_b,,")]).unwrap();
        let got: Vec<&str> = c
            .webhook_secrets
            .iter()
            .map(|s| s.expose_secret())
            .collect();
        assert_eq!(got, ["whsec_a", "whsec_b"]);
    }

    #[test]
    fn stripe_key_without_webhook_secret_refuses_to_serve() {
        let c = config(&[("STRIPE_SECRET_KEY", "sk_test_x")]).unwrap();
        let err = c.check_serve().unwrap_err();
        assert_eq!(err.variable, "STRIPE_WEBHOOK_SECRET");
        assert!(!err.to_string().contains("sk_test_x"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("PAIDONCE_BIND", "nope"),
            ("WEBHOOK_TOLERANCE_SECS", "-1"),
            ("DATABASE_POOL_SIZE", "0"),
            ("PUBLIC_BASE_URL", "ftp://x"),
        ] {
            let err = config(&[(name, value)]).unwrap_err();
            assert_eq!(err.variable, name, "{value}");
        }
    }

    #[test]
    fn a_merchant_webhook_must_be_http_and_come_with_its_secret() {
        for bad in [
            "ftp://shop.example/hook",
            "file:///etc/passwd",
            "not a url",
            "mailto:a@b.c",
        ] {
            let err = config(&[
                ("MERCHANT_WEBHOOK_URL", bad),
                ("MERCHANT_WEBHOOK_SECRET", "s"),
            ])
            .unwrap_err();
            assert_eq!(err.variable, "MERCHANT_WEBHOOK_URL", "{bad}");
        }
        let err = config(&[("MERCHANT_WEBHOOK_URL", "https://shop.example/hook")]).unwrap_err();
        assert_eq!(err.variable, "MERCHANT_WEBHOOK_SECRET");
        let ok = config(&[
            ("MERCHANT_WEBHOOK_URL", "https://shop.example/hook"),
            ("MERCHANT_WEBHOOK_SECRET", "whsec_m"),
        ])
        .unwrap();
        assert!(ok.outbox().enabled);
        assert!(!config(&[]).unwrap().outbox().enabled);
    }

    #[test]
    fn key_mode_follows_the_key_prefix() {
        let live = config(&[("STRIPE_SECRET_KEY", "sk_live_1")]).unwrap();
        assert_eq!(live.stripe.unwrap().key_mode(), Some(KeyMode::Live));
        let test = config(&[("STRIPE_SECRET_KEY", "rk_test_1")]).unwrap();
        assert_eq!(test.stripe.unwrap().key_mode(), Some(KeyMode::Test));
    }
}
