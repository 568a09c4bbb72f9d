//! Rendering answers and errors for people.

use std::fmt::Write;

use l3_store::CommitInfo;

/// The error and its causes on one line.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            let _ = write!(out, ": {c}");
        }
    }
    out
}

/// A hint for errors where the next step is not obvious.
pub fn hint(e: &anyhow::Error) -> Option<&'static str> {
    let store_err = e
        .chain()
        .find_map(|c| c.downcast_ref::<l3_store::Error>())?;
    match store_err {
        l3_store::Error::Busy { .. } => Some("set L3_LOCK_TIMEOUT (seconds) to wait longer"),
        l3_store::Error::Sled(_) => Some(
            "the metadata database (meta/ in the store) could not be read; if it is damaged, \
             restore the store from a copy",
        ),
        l3_store::Error::NotAStore(_) => {
            Some("pass --store DIR, set L3_STORE, or run `l3 init` to create ./.l3")
        }
        l3_store::Error::Chunk(l3_store_chunk) if l3_store_chunk.to_string().contains("hash") => {
            Some("run `l3 fsck`; importing the original file again repairs the chunk")
        }
        _ => None,
    }
}

pub fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// One line per commit: short id, first message line, refs.
pub fn commit_line(c: &CommitInfo, refs: &[String]) -> String {
    let subject = c.message.lines().next().unwrap_or("");
    let decoration = if refs.is_empty() {
        String::new()
    } else {
        format!(" ({})", refs.join(", "))
    };
    format!("{}{decoration} {subject}", c.id.short(12))
}

/// A tensor or data-set name for a terminal: control characters (newlines, escape
/// sequences) are shown escaped, never sent raw.
pub fn name(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(char::is_control) {
        s.escape_debug().to_string().into()
    } else {
        s.into()
    }
}

pub fn json(value: &impl serde::Serialize) -> String {
    let mut s = serde_json::to_string_pretty(value).expect("answers serialize");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_time() {
        assert_eq!(super::time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::time(1_709_210_096_000), "2024-02-29 12:34:56 UTC");
    }
}
