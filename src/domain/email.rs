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

    /// An address of exactly `len` characters that passes every other rule.
    fn address_of(len: usize) -> String {
        let local = "a".repeat(64);
        let mut domain = String::new();
        while local.len() + 1 + domain.len() < len {
            let room = len - local.len() - 1 - domain.len();
            let label = room.saturating_sub(1).clamp(1, 63);
            if !domain.is_empty() {
                domain.push('.');
            }
            domain.push_str(&"b".repeat(label));
        }
        let email = format!("{local}@{domain}");
        assert_eq!(email.len(), len);
        email
    }

    #[test]
    fn the_length_limit_is_254_characters_inclusive() {
        let longest = address_of(254);
        assert_eq!(Email::parse(&longest).unwrap().as_str(), longest);
        assert!(Email::parse(&address_of(255)).is_err());
    }

    #[test]
    fn an_email_displays_as_its_normalised_text() {
        let email = Email::parse(" Ada@Example.COM").unwrap();
        assert_eq!(email.to_string(), "ada@example.com");
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
