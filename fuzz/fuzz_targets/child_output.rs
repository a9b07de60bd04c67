//! What a child (etcdctl, etcd, rclone) writes to stderr and stdout, as an
//! error message shows it: one line, secrets redacted. Structured: the
//! input also places a secret in one of the forms `redact::redact` promises
//! to hide (its doc), amid arbitrary text; it must not appear.
#![no_main]

use libfuzzer_sys::{arbitrary, fuzz_target};

use etcd2_backup::cmd;

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    stderr: String,
    stdout: String,
    before: String,
    after: String,
    form: u8,
    secret: String,
}

fuzz_target!(|input: Input| {
    let tail = cmd::format_tail(&input.stderr, &input.stdout);
    assert!(!tail.contains('\n'), "a tail of two lines: {tail:?}");
    let line = cmd::one_line(&input.stderr);
    assert!(!line.contains('\n'), "one_line gave two: {line:?}");
    let once = cmd::redact(&input.stderr).into_owned();
    let _ = cmd::redact(&once);

    // A secret the documented forms cover: no whitespace, no quote or
    // delimiter the form ends at, long enough to be told from chance, no
    // `*` (so that `***` is never it).
    let s = &input.secret;
    let plain = s.len() >= 8
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=_-.~!".contains(c));
    if !plain {
        return;
    }
    let (text, hidden) = match input.form % 5 {
        // --flag=value: up to whitespace
        0 => (
            format!(
                "{} --s3-secret-access-key={s} {}",
                input.before, input.after
            ),
            true,
        ),
        // ,param=value in a connection string, up to , or :
        1 => (
            format!(
                "{} :s3,secret_access_key={s},x=y:bucket {}",
                input.before, input.after
            ),
            true,
        ),
        // the same, quoted, the quote never closed (a mistyped endpoint)
        2 => (
            format!(
                "{} :s3,secret_access_key='{s}:bucket {}",
                input.before, input.after
            ),
            true,
        ),
        // a URL's password
        3 => (
            format!(
                "{} https://user:{s}@host/path {}",
                input.before, input.after
            ),
            !s.contains('/'),
        ),
        // a SAS signature
        _ => (
            format!(
                "{} https://a.blob/c?sv=1&sig={s} {}",
                input.before, input.after
            ),
            !s.contains('&'),
        ),
    };
    // Only where the planted one is its only occurrence (the text around
    // it may hold it too, or overlap it).
    let occurrences = (0..text.len())
        .filter(|&i| text.get(i..).is_some_and(|t| t.starts_with(s.as_str())))
        .count();
    if hidden && occurrences == 1 {
        let out = cmd::redact(&text);
        assert!(!out.contains(s.as_str()), "{s:?} shown in {out:?}");
        let tail = cmd::format_tail(&text, "");
        assert!(
            !tail.contains(s.as_str()),
            "{s:?} shown in the tail {tail:?}"
        );
    }
});
