//! A shopper's e-mail, trimmed and lowercased: accounts are matched case-insensitively.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Accepts what a checkout form should accept; refuses what cannot be an address.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err("e-mail is required".into());
        }
        if email.len() > 254 {
            return Err("e-mail is longer than 254 characters".into());
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err("e-mail must contain @".into());
        };
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let domain_ok = domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !local_ok || !domain_ok {
            return Err("e-mail is not a valid address".into());
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Email;

    #[test]
    fn valid_addresses_are_trimmed_and_lowercased() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        assert_eq!(
            Email::parse("a.b+tag@sub.example.org").unwrap().as_str(),
            "a.b+tag@sub.example.org"
        );
    }

    #[test]
    fn invalid_addresses_are_rejected() {
        let long = format!("{}@example.com", "a".repeat(250));
        for (raw, why) in [
            ("", "empty"),
            ("   ", "blank"),
            ("plain", "no @"),
            ("@example.com", "no local part"),
            ("a@", "no domain"),
            ("a@localhost", "domain without a dot"),
            ("a b@example.com", "space"),
            ("a@exa mple.com", "space in domain"),
            ("a@-x.com", "label starts with hyphen"),
            ("a..b@example.com", "double dot"),
            ("<script>@x.com", "angle brackets"),
            (long.as_str(), "too long"),
        ] {
            assert!(Email::parse(raw).is_err(), "accepted {raw:?} ({why})");
        }
    }
}
