//! `redis_error` and `slow_commands`: faults that act on Redis commands in
//! the proxies of the targets rather than on bytes. `redis_error` answers
//! the matching commands with a Redis error (`OOM`, `LOADING`, `READONLY`,
//! `BUSY`, `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`) instead of running
//! them; `slow_commands` holds them for `latency` ("slow writes, fast
//! reads"). Which commands: those in `commands` (all, when left out), whose
//! key matches the glob `keys`, and of those either each with
//! `probability` or every `every`-th on each connection. Both are toxics
//! of gameday's own (`redis_error`, `slow_commands`), put on and taken off
//! like any network fault; the proxy does the reading
//! (`proxy::commands`). The clients' error counts by class (`oom`,
//! `loading`, …) in the fault's phase show the effect.

use super::FaultCtx;
use crate::proxy::control::NetFault;
use crate::proxy::toxic::{CommandMatch, Stream, ToxicKind, REDIS_ERRORS};
use crate::vocab::check::{check, fraction, invalid, positive_int, Checked};
use crate::vocab::units::Dur;
use serde::Deserialize;
use toml::Spanned;

/// The keys of `kind = "redis_error"`.
pub const KEYS: &[&str] = &["error", "commands", "keys", "probability", "every"];
/// The keys of `kind = "slow_commands"`.
pub const SLOW_KEYS: &[&str] = &["latency", "commands", "keys", "probability", "every"];

/// Why a lab cannot take these faults.
pub const NEEDS: &str = "needs gameday's own proxy (embedded, or `gameday proxy`): a real Toxiproxy has no command toxics";

/// The `[[fault]]` keys of both kinds (the key check keeps each kind to
/// its own).
#[derive(Debug, Deserialize)]
pub struct Raw {
    error: Option<Spanned<String>>,
    latency: Option<Spanned<Dur>>,
    commands: Option<Spanned<Vec<Spanned<String>>>>,
    keys: Option<Spanned<String>>,
    probability: Option<Spanned<f64>>,
    every: Option<Spanned<i64>>,
}

impl Raw {
    /// A `redis_error` (`slow` false) or `slow_commands` toxic on the
    /// client → server direction.
    pub fn plan(self, ctx: &FaultCtx, slow: bool) -> Checked<NetFault> {
        let matching = self.matching()?;
        let kind = if slow {
            let latency = self.latency.as_ref().ok_or_else(|| {
                needs(
                    ctx,
                    "latency",
                    "how long each matching command is held, e.g. \"20ms\"",
                )
            })?;
            check(
                latency,
                latency.get_ref().0.as_millis() >= 1,
                "`latency` must be at least 1ms",
            )?;
            ToxicKind::SlowCommands {
                latency: latency.get_ref().0.as_millis() as u64,
                matching,
            }
        } else {
            let error = self.error.as_ref().ok_or_else(|| {
                needs(ctx, "error", &format!("one of {}", REDIS_ERRORS.join(", ")))
            })?;
            let code = error.get_ref().to_ascii_uppercase();
            check(
                error,
                REDIS_ERRORS.contains(&code.as_str()),
                format!(
                    "unknown Redis error `{}`: one of {}",
                    error.get_ref(),
                    REDIS_ERRORS.join(", ")
                ),
            )?;
            ToxicKind::RedisError {
                error: code,
                matching,
            }
        };
        Ok(NetFault::Toxic {
            kind,
            streams: vec![Stream::Upstream],
            toxicity: 1.0,
            path: Default::default(),
        })
    }

    fn matching(&self) -> Checked<CommandMatch> {
        let mut commands = Vec::new();
        if let Some(list) = &self.commands {
            check(
                list,
                !list.get_ref().is_empty(),
                "`commands` names no command: leave it out to match every command",
            )?;
            for c in list.get_ref() {
                let ok = !c.get_ref().is_empty()
                    && c.get_ref()
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'|');
                check(
                    c,
                    ok,
                    format!("`{}` is not a Redis command name", c.get_ref()),
                )?;
                commands.push(c.get_ref().to_ascii_uppercase());
            }
        }
        let keys = match &self.keys {
            Some(k) => {
                if let Err(e) = glob::Pattern::new(k.get_ref()) {
                    return Err(invalid(k.span(), format!("`keys` is not a glob: {e}")));
                }
                k.get_ref().clone()
            }
            None => String::new(),
        };
        let (probability, every) = match (&self.probability, &self.every) {
            (Some(p), Some(_)) => {
                return Err(invalid(p.span(), "give `probability` or `every`, not both"))
            }
            (Some(p), None) => (fraction(p, "probability")?, 0),
            (None, Some(n)) => (1.0, positive_int(n, "every")?),
            (None, None) => (1.0, 0),
        };
        Ok(CommandMatch {
            commands,
            keys,
            probability,
            every,
        })
    }
}

fn needs(ctx: &FaultCtx, key: &str, hint: &str) -> crate::vocab::check::Invalid {
    invalid(
        ctx.name.span(),
        format!(
            "fault `{}` of kind `{}` needs `{key}` ({hint})",
            ctx.name.get_ref(),
            ctx.kind.as_str()
        ),
    )
}
