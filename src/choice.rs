//! Enums that users name in configs and on the command line. Each derives its names with
//! strum (`EnumIter` + `IntoStaticStr`); [`parse`] turns a name back into a value with an
//! error that lists the choices, so no enum carries a hand-written name table.

use strum::IntoEnumIterator;

/// The value of `T` named `s`, or an error naming `what` and every choice.
pub fn parse<T>(what: &str, s: &str) -> Result<T, String>
where
    T: IntoEnumIterator + Into<&'static str> + Copy,
{
    T::iter()
        .find(|v| Into::<&'static str>::into(*v) == s)
        .ok_or_else(|| format!("unknown {what} {s:?}; expected {}", names::<T>()))
}

/// `a, b or c`.
pub fn names<T>() -> String
where
    T: IntoEnumIterator + Into<&'static str>,
{
    let all: Vec<&'static str> = T::iter().map(Into::into).collect();
    match all.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #[derive(Clone, Copy, Debug, PartialEq, strum::EnumIter, strum::IntoStaticStr)]
    #[strum(serialize_all = "snake_case")]
    enum Pick {
        First,
        SecondOne,
        Third,
    }

    #[test]
    fn parses_names_and_lists_the_choices() {
        assert_eq!(
            super::parse::<Pick>("pick", "second_one"),
            Ok(Pick::SecondOne)
        );
        assert_eq!(
            super::parse::<Pick>("pick", "x").unwrap_err(),
            "unknown pick \"x\"; expected first, second_one or third"
        );
    }
}
