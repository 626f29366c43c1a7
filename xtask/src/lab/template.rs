//! The guest's shell scripts live in `xtask/guest/*.sh`, embedded at build
//! time; their `@NAME@` placeholders are filled here.

use anyhow::{Result, bail};

/// `template` with every `@NAME@` replaced by its value. A placeholder left
/// without a value, or a value without its placeholder, is an error (a
/// script and its caller out of step).
pub fn fill(template: &str, values: &[(&str, String)]) -> Result<String> {
    for (name, _) in values {
        if !placeholders(template).iter().any(|(_, p)| p == name) {
            bail!("guest script has no placeholder @{name}@");
        }
    }
    // One pass over the template: a value is never searched for placeholders.
    let mut text = String::with_capacity(template.len());
    let mut done = 0;
    for (at, name) in placeholders(template) {
        let Some((_, value)) = values.iter().find(|(n, _)| *n == name) else {
            bail!("guest script placeholder @{name}@ has no value");
        };
        text.push_str(&template[done..at]);
        text.push_str(value);
        done = at + name.len() + 2;
    }
    text.push_str(&template[done..]);
    Ok(text)
}

/// The `@NAME@` placeholders of `text` (NAME: capitals, digits, `_`) with
/// the offset of their first `@`.
fn placeholders(text: &str) -> Vec<(usize, &str)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(start) = text[from..].find('@').map(|i| from + i) {
        let after = &text[start + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(after.len());
        if len > 0 && after[len..].starts_with('@') {
            found.push((start, &after[..len]));
            from = start + len + 2;
        } else {
            from = start + 1;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_checked() {
        let t = "echo @A@ \"$@\" @B_2@ user@host\n";
        let names: Vec<&str> = placeholders(t).into_iter().map(|(_, n)| n).collect();
        assert_eq!(names, ["A", "B_2"]);
        assert_eq!(
            fill(t, &[("A", "1".into()), ("B_2", "x y".into())]).ok(),
            Some("echo 1 \"$@\" x y user@host\n".to_owned())
        );
        assert!(fill(t, &[("A", "1".into())]).is_err(), "B_2 left");
        assert!(
            fill(
                t,
                &[("A", "1".into()), ("B_2", "2".into()), ("C", "3".into())]
            )
            .is_err(),
            "C unused"
        );
        assert_eq!(
            fill("@A@@B@", &[("A", "@B@".into()), ("B", "b".into())]).ok(),
            Some("@B@b".to_owned()),
            "values are not searched"
        );
    }
}
