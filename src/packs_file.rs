//! PACKS_FILE (SPEC §2): the merchant's own packs, in TOML, checked whole before
//! anything is applied. Every error names its line, so a merchant can fix the file
//! without guessing.
//!
//! ```toml
//! [[pack]]
//! id = "starter"        # [a-z0-9_-]{1,64}, unique
//! name = "Starter"
//! credits = 100         # a positive whole number
//! amount = 500          # minor units (cents), positive
//! currency = "usd"      # a currency Stripe charges in
//! ```

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

/// One pack as the file gives it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackSpec {
    pub id: String,
    pub name: String,
    pub credits: i64,
    pub amount: i64,
    pub currency: String,
    /// Its place in the file: the checkout lists packs in this order.
    pub position: i32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    pack: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: Spanned<String>,
    name: Spanned<String>,
    credits: Spanned<i64>,
    amount: Spanned<i64>,
    currency: Spanned<String>,
}

/// The currencies Stripe charges in (lowercase ISO 4217, as Stripe writes them).
const CURRENCIES: &[&str] = &[
    "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd", "bdt",
    "bgn", "bhd", "bif", "bmd", "bnd", "bob", "brl", "bsd", "bwp", "byn", "bzd", "cad", "cdf",
    "chf", "clp", "cny", "cop", "crc", "cve", "czk", "djf", "dkk", "dop", "dzd", "egp", "etb",
    "eur", "fjd", "fkp", "gbp", "gel", "gip", "gmd", "gnf", "gtq", "gyd", "hkd", "hnl", "htg",
    "huf", "idr", "ils", "inr", "isk", "jmd", "jod", "jpy", "kes", "kgs", "khr", "kmf", "krw",
    "kwd", "kyd", "kzt", "lak", "lbp", "lkr", "lrd", "lsl", "mad", "mdl", "mga", "mkd", "mmk",
    "mnt", "mop", "mur", "mvr", "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio", "nok", "npr",
    "nzd", "omr", "pab", "pen", "pgk", "php", "pkr", "pln", "pyg", "qar", "ron", "rsd", "rub",
    "rwf", "sar", "sbd", "scr", "sek", "sgd", "shp", "sle", "sos", "srd", "std", "szl", "thb",
    "tjs", "tnd", "top", "try", "ttd", "twd", "tzs", "uah", "ugx", "usd", "uyu", "uzs", "vnd",
    "vuv", "wst", "xaf", "xcd", "xof", "xpf", "yer", "zar", "zmw",
];

/// Reads and checks the file at `path`.
pub fn load(path: &Path) -> Result<Vec<PackSpec>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot be read: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Checks a whole file: the first problem, with its line, or every pack.
pub fn parse(text: &str) -> Result<Vec<PackSpec>, String> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let file: File = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map_or(String::new(), |s| format!("line {}: ", line_of(s.start)));
        format!("{at}{}", e.message())
    })?;
    if file.pack.is_empty() {
        return Err("line 1: no [[pack]] entries: a shop needs at least one pack".into());
    }
    let mut seen = HashSet::new();
    let mut packs = Vec::new();
    for (i, entry) in file.pack.into_iter().enumerate() {
        let at = |s: &std::ops::Range<usize>| format!("line {}", line_of(s.start));
        let id = entry.id.get_ref();
        let valid_id = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid_id {
            return Err(format!(
                "{}: pack id {id:?} must be 1-64 of a-z, 0-9, '_' and '-'",
                at(&entry.id.span())
            ));
        }
        if !seen.insert(id.clone()) {
            return Err(format!(
                "{}: pack id {id:?} is used twice",
                at(&entry.id.span())
            ));
        }
        let name = entry.name.get_ref().trim();
        if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
            return Err(format!(
                "{}: pack name must be 1-80 characters without control characters",
                at(&entry.name.span())
            ));
        }
        for (field, value) in [("credits", &entry.credits), ("amount", &entry.amount)] {
            if *value.get_ref() <= 0 || *value.get_ref() > i64::from(i32::MAX) {
                return Err(format!(
                    "{}: {field} must be a whole number from 1 to 2147483647, not {}",
                    at(&value.span()),
                    value.get_ref()
                ));
            }
        }
        let currency = entry.currency.get_ref().trim().to_ascii_lowercase();
        if !CURRENCIES.contains(&currency.as_str()) {
            return Err(format!(
                "{}: currency {:?} is not one Stripe charges in (a three-letter ISO 4217 code such as usd or eur)",
                at(&entry.currency.span()),
                entry.currency.get_ref()
            ));
        }
        packs.push(PackSpec {
            id: id.clone(),
            name: name.to_owned(),
            credits: *entry.credits.get_ref(),
            amount: *entry.amount.get_ref(),
            currency,
            position: i32::try_from(i + 1).unwrap_or(i32::MAX),
        });
    }
    Ok(packs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[pack]]
id = "small"
name = "Small"
credits = 10
amount = 199
currency = "EUR"

[[pack]]
id = "big_one"
name = "Big one"
credits = 1000
amount = 9900
currency = "eur"
"#;

    #[test]
    fn a_good_file_gives_its_packs_in_order() {
        let packs = parse(GOOD).unwrap();
        assert_eq!(packs.len(), 2);
        assert_eq!(packs[0].id, "small");
        assert_eq!(packs[0].currency, "eur");
        assert_eq!(packs[1].position, 2);
    }

    #[test]
    fn each_bad_file_names_its_line() {
        let cases = [
            (
                GOOD.replace("id = \"big_one\"", "id = \"small\""),
                "line 10: pack id \"small\" is used twice",
            ),
            (
                GOOD.replace("amount = 9900", "amount = -1"),
                "line 13: amount must be",
            ),
            (
                GOOD.replace("credits = 10\n", "credits = 0\n"),
                "line 5: credits must be",
            ),
            (
                GOOD.replace("currency = \"eur\"", "currency = \"xyz\""),
                "line 14: currency \"xyz\"",
            ),
            (
                GOOD.replace("id = \"big_one\"", "id = \"Big One\""),
                "line 10: pack id \"Big One\"",
            ),
            (GOOD.replace("amount = 9900", "amount = 99.5"), "line 13:"),
            (
                GOOD.replace("amount = 9900", "amount = \"9900\""),
                "line 13:",
            ),
            (GOOD.replace("name = \"Small\"\n", ""), "line 2:"),
            (
                GOOD.replace("currency = \"eur\"", "currency = \"eur\"\ncolour = \"red\""),
                "line 15:",
            ),
            ("[[pack]\nid = 1".to_owned(), "line 1:"),
            (String::new(), "line 1: no [[pack]] entries"),
        ];
        for (text, expected) in cases {
            let err = parse(&text).unwrap_err();
            assert!(
                err.starts_with(expected),
                "{err:?} should start with {expected:?}"
            );
        }
    }
}
