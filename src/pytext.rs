//! Values printed the way LiteLLM's Python messages print them (`repr` of lists and floats),
//! so that texts compared by clients match LiteLLM's byte for byte.

/// Python's `repr` of a list of strings: `['a', 'b']`.
pub fn py_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Python's `repr` of a float: `5.0`, `2.5`, `1e-05`, `1e+16` (pydantic reads budgets and spend
/// as floats, so LiteLLM prints `Spend=5.0` where Rust would print `5`).
pub fn py_float(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() { "nan".into() } else if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let magnitude = x.abs();
    if magnitude != 0.0 && !(1e-4..1e16).contains(&magnitude) {
        // Rust's `{:e}` is the shortest round-trip mantissa: `1.5e-7` → Python's `1.5e-07`.
        let text = format!("{x:e}");
        let Some((mantissa, exponent)) = text.split_once('e') else { return text };
        let (sign, digits) = match exponent.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exponent),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    if x.fract() == 0.0 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// LiteLLM's `RouteChecks._mask_user_id` (its `SensitiveDataMasker` with 6 visible leading and
/// 2 trailing characters): `***` for ids of up to 4 characters (and none), every character
/// masked up to 8, else `abcdef***yz`. Lengths are in characters, as Python's.
pub fn mask_user_id(user_id: &str) -> String {
    let chars: Vec<char> = user_id.chars().collect();
    match chars.len() {
        0..=4 => "***".to_string(),
        n @ 5..=8 => "*".repeat(n),
        n => {
            let head: String = chars.iter().take(6).collect();
            let tail: String = chars.iter().skip(n - 2).collect();
            format!("{head}{}{tail}", "*".repeat(n - 8))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_repr() {
        for (x, python) in [
            (5.0, "5.0"), (0.0, "0.0"), (-3.0, "-3.0"), (2.5, "2.5"), (10.25, "10.25"), (0.1, "0.1"),
            (1e-5, "1e-05"), (1.5e-7, "1.5e-07"), (0.0001, "0.0001"), (1e16, "1e+16"), (123456789012345.0, "123456789012345.0"),
            (2.5e20, "2.5e+20"), (1e100, "1e+100"), (0.30000000000000004, "0.30000000000000004"),
        ] {
            assert_eq!(py_float(x), python, "{x:?}");
        }
    }

    #[test]
    fn user_ids_are_masked_as_litellm_masks_them() {
        // Values printed by LiteLLM 1.110.2's own masker.
        for (id, masked) in [
            ("", "***"), ("bob", "***"), ("svc-1", "*****"), ("alice", "*****"), ("unknown", "*******"),
            ("abcdefgh", "********"), ("abcdefghi", "abcdef*hi"), ("bob@corp.example.com", "bob@co************om"),
            ("héllo wörld", "héllo ***ld"),
        ] {
            assert_eq!(mask_user_id(id), masked, "{id:?}");
        }
    }

    #[test]
    fn lists_print_as_python_repr() {
        assert_eq!(py_list(&["a", "b"]), "['a', 'b']");
        assert_eq!(py_list(&[]), "[]");
    }
}
