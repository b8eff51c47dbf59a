//! Checks of scenario values that keep the position of the culprit. A
//! value that fails is an `Invalid`: a byte range of the scenario file and
//! a message. The scenario layer turns the range into file:line:col; the
//! modules that own a fault's or a workload's parameters validate them with
//! these helpers without knowing about files.

use super::units::Dur;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

/// A refused value: where it is in the file, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub span: Range<usize>,
    pub message: String,
}

pub type Checked<T> = Result<T, Invalid>;

/// An `Invalid` at `span`.
pub fn invalid(span: Range<usize>, message: impl Into<String>) -> Invalid {
    Invalid {
        span,
        message: message.into(),
    }
}

/// Refuses `s` with `message` unless `ok`.
pub fn check<T>(s: &Spanned<T>, ok: bool, message: impl Into<String>) -> Checked<()> {
    if ok {
        Ok(())
    } else {
        Err(invalid(s.span(), message))
    }
}

/// A whole number of at least 1.
pub fn positive_int(s: &Spanned<i64>, key: &str) -> Checked<u64> {
    check(
        s,
        *s.get_ref() >= 1,
        format!("`{key}` must be at least 1, not {}", s.get_ref()),
    )?;
    Ok(*s.get_ref() as u64)
}

/// An optional whole number of at least 1, else `default`.
pub fn positive_int_or(s: Option<&Spanned<i64>>, key: &str, default: u64) -> Checked<u64> {
    s.map(|s| positive_int(s, key))
        .transpose()
        .map(|v| v.unwrap_or(default))
}

/// A number from 0 to 1.
pub fn fraction(s: &Spanned<f64>, key: &str) -> Checked<f64> {
    let v = *s.get_ref();
    check(
        s,
        (0.0..=1.0).contains(&v),
        format!("`{key}` must be between 0 and 1, not {v}"),
    )?;
    Ok(v)
}

/// An optional fraction, else `default`.
pub fn fraction_or(s: Option<&Spanned<f64>>, key: &str, default: f64) -> Checked<f64> {
    s.map(|s| fraction(s, key))
        .transpose()
        .map(|v| v.unwrap_or(default))
}

/// A fraction below 1.
pub fn jitter_or(s: Option<&Spanned<f64>>, key: &str, default: f64, why: &str) -> Checked<f64> {
    match s {
        Some(j) => {
            let v = fraction(j, key)?;
            check(j, v < 1.0, format!("`{key}` must be below 1{why}"))?;
            Ok(v)
        }
        None => Ok(default),
    }
}

/// A finite number above 0 (or, with `zero_ok`, at least 0).
pub fn positive_f64_or(
    s: Option<&Spanned<f64>>,
    default: f64,
    zero_ok: bool,
    message: &str,
) -> Checked<f64> {
    match s {
        Some(v) => {
            let x = *v.get_ref();
            let ok = x.is_finite() && (x > 0.0 || (zero_ok && x == 0.0));
            check(v, ok, message)?;
            Ok(x)
        }
        None => Ok(default),
    }
}

/// An optional duration longer than 0s, else `default`.
pub fn positive_dur(d: Option<&Spanned<Dur>>, key: &str, default: Duration) -> Checked<Duration> {
    match d {
        Some(s) => {
            check(
                s,
                s.get_ref().0 > Duration::ZERO,
                format!("`{key}` must be longer than 0s"),
            )?;
            Ok(s.get_ref().0)
        }
        None => Ok(default),
    }
}

/// A name of letters, digits and the characters in `extra`.
pub fn name(s: &Spanned<String>, extra: &str, message: &str) -> Checked<String> {
    let v = s.get_ref();
    let ok = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c));
    check(s, ok, message)?;
    Ok(v.clone())
}

/// A list of values to compare as variants: not given with its single
/// form, not empty, no value twice.
pub fn variant_list<T: Copy + PartialEq>(
    list: &Spanned<Vec<T>>,
    single_given: bool,
    one: &str,
    many: &str,
    name: impl Fn(T) -> &'static str,
) -> Checked<()> {
    if single_given {
        return Err(invalid(
            list.span(),
            format!("give `{one}` (one) or `{many}` (several to compare), not both"),
        ));
    }
    check(
        list,
        !list.get_ref().is_empty(),
        format!("`{many}` lists none"),
    )?;
    for (i, &v) in list.get_ref().iter().enumerate() {
        check(
            list,
            !list.get_ref()[..i].contains(&v),
            format!("`{many}` lists `{}` twice", name(v)),
        )?;
    }
    Ok(())
}

/// The keys a serde struct reads, as its derive lists them: one source of
/// truth for what a `[workload]` or `[[fault]]` kind accepts.
pub fn fields_of<'de, T: serde::Deserialize<'de>>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    use std::cell::Cell;

    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("probe")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    struct Probe<'a>(&'a Cell<&'static [&'static str]>);
    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0.set(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let fields = Cell::new(&[][..]);
    let _ = T::deserialize(Probe(&fields));
    fields.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_the_span() {
        let s = Spanned::new(10..12, 0i64);
        let e = positive_int(&s, "users").unwrap_err();
        assert_eq!(e.span, 10..12);
        assert!(e.message.contains("`users` must be at least 1"));
        let f = Spanned::new(3..4, 1.5f64);
        assert!(fraction(&f, "read_ratio").is_err());
        let l = Spanned::new(0..5, vec![1, 2, 1]);
        let e = variant_list(&l, false, "a", "as", |_| "x").unwrap_err();
        assert!(e.message.contains("twice"));
    }

    #[test]
    fn fields_are_read_from_the_derive() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Raw {
            keys: Option<i64>,
            #[serde(rename = "for")]
            for_: Option<i64>,
        }
        assert_eq!(fields_of::<Raw>(), &["keys", "for"]);
    }
}
