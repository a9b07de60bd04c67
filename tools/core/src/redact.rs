//! The one rule for secrets in anything we print: [`redact`]. A ground
//! module: it imports nothing of the crate (a test below checks).

/// Words that mark a flag or a connection-string parameter as secret.
const SECRET_WORDS: &str = "pass|secret|key|token|credential|user|sas";

pub fn is_secret_flag(arg: &str) -> bool {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(&format!("(?i)^--[a-z0-9-]*(?:{SECRET_WORDS})[a-z0-9-]*$"))
            .expect("static regex")
    });
    RE.is_match(arg)
}

/// Hide secrets in text we print (log lines, errors, command lines, a
/// child's stderr): the one rule for every output of the tools. Replaced by
/// `***` is the value of
/// - a flag whose name says pass/secret/key/token/credential/user:
///   `--s3-secret-access-key=X` (in a command line also `--sftp-pass X`,
///   argument by argument: `Invocation::display` in cmd);
/// - a connection-string parameter whose name says the same:
///   `:s3,access_key_id=X,secret_access_key='Y':bucket`, also URL-encoded
///   (`%2Csecret_access_key%3DY`, as rclone echoes it in errors);
/// - the password of a URL (`https://user:X@host`), also URL-encoded;
/// - a URL's signature parameter (`?sig=X`, `&X-Amz-Signature=X`), as in an
///   Azure SAS URL.
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    static RES: std::sync::LazyLock<[(regex::Regex, &'static str); 6]> = std::sync::LazyLock::new(
        || {
            let re = |s: String| regex::Regex::new(&s).expect("static regex");
            let name = format!("[a-z0-9_-]*(?:{SECRET_WORDS})[a-z0-9_-]*");
            [
                // --flag=value: everything up to whitespace, whatever its
                // first character (obscured passwords may start with -)
                (
                    re(format!(r#"(?i)(--{name})=(?:'[^']*'|"[^"]*"|\S+)"#)),
                    "${1}=***",
                ),
                // Not `--flag value`: in free text that is prose ("--key
                // must be given"); a command line's separate values are
                // redacted argument by argument (`Invocation::display` in cmd).
                // ,param=value in a connection string; quotes may hold , and :
                // (a quote that never closes: up to the next , : or blank)
                (
                    re(format!(r#"(?i)(,{name}=)(?:'[^']*'|"[^"]*"|['"]?[^,:\s'"]*)"#)),
                    "${1}***",
                ),
                // the same, URL-encoded: up to the next encoded , or :
                // (a secret holds / and + as %2F and %2B)
                (
                    re(format!(
                        r#"(?i)(%2C{name}%3D)(?:[^%\s"']|%(?:2[0-9abd-f]|3[0-9b-f]|[014-9a-f][0-9a-f]))*"#
                    )),
                    "${1}***",
                ),
                // user:password@ in a URL; the password may hold quotes
                // (userinfo allows '), so only / blank and @ end it
                (
                    re(r#"(?i)([a-z][a-z0-9+.-]*://[^/\s:@'"]*:)[^@/\s]+@"#.to_owned()),
                    "${1}***@",
                ),
                // the same, URL-encoded (%3A%2F%2Fuser%3Apassword%40)
                (
                    re(r#"(?i)(%3A%2F%2F(?:[^%\s/@'"]|%[0-9a-f]{2})*?%3A)(?:[^%\s'"]|%[0-9a-f]{2})*?%40"#.to_owned()),
                    "${1}***%40",
                ),
                // signatures in a URL's query
                (
                    re(r#"(?i)([?&](?:sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token)=)[^&\s'"]+"#.to_owned()),
                    "${1}***",
                ),
            ]
        },
    );
    let mut out = std::borrow::Cow::Borrowed(text);
    for (re, with) in RES.iter() {
        if let std::borrow::Cow::Owned(s) = re.replace_all(&out, *with) {
            out = std::borrow::Cow::Owned(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_secret_flags_and_connection_string_parameters() {
        let cases = [
            (
                "--s3-secret-access-key=AAA --bwlimit=1M",
                "--s3-secret-access-key=*** --bwlimit=1M",
            ),
            ("--webdav-pass='a b' x", "--webdav-pass=*** x"),
            (
                ":s3,provider=AWS,access_key_id=AAA,secret_access_key='B,C:D',region=x:bucket/p",
                ":s3,provider=AWS,access_key_id=***,secret_access_key=***,region=x:bucket/p",
            ),
            ("remote,token=\"T\":path", "remote,token=***:path"),
            (
                "Put \"https://h/%2Csecret_access_key%3DSSS%2Cforce%3Dtrue\"",
                "Put \"https://h/%2Csecret_access_key%3D***%2Cforce%3Dtrue\"",
            ),
            (
                "x%2Csecret_access_key%3DabcD%2FefGH%2Bz%3Abucket",
                "x%2Csecret_access_key%3D***%3Abucket",
            ),
            (
                "--webdav-pass=-Zx9 --bwlimit=1M",
                "--webdav-pass=*** --bwlimit=1M",
            ),
            (
                "--keep 3 --hash-type sha1 s3:bucket",
                "--keep 3 --hash-type sha1 s3:bucket",
            ),
            // A password inside a URL (a webdav url= in a connection
            // string), plain and as rclone echoes it URL-encoded.
            (
                ":webdav,url='https://backup:FAKEPASS@dav.example/x':etcd",
                ":webdav,url='https://backup:***@dav.example/x':etcd",
            ),
            (
                "Get \"https://u:FAKEPASS@h/p\": 401",
                "Get \"https://u:***@h/p\": 401",
            ),
            // A password with quotes in it (RFC 3986 lets ' stand
            // unencoded in userinfo): hidden whole, not left in the clear.
            (
                "Get \"https://u:pa'ss\"wd@h/p\": 401",
                "Get \"https://u:***@h/p\": 401",
            ),
            (
                ":webdav,url='https://backup:FAKE'PASS@dav.example/x':etcd",
                ":webdav,url='https://backup:***@dav.example/x':etcd",
            ),
            (
                "x%2Curl%3Dhttps%3A%2F%2Fu%3AFAKEPASS%40h%2Fp%3Aetcd",
                "x%2Curl%3Dhttps%3A%2F%2Fu%3A***%40h%2Fp%3Aetcd",
            ),
            // A SAS URL's signature, whatever the flag's name.
            (
                "--azureblob-sas-url=https://a.blob/c?sv=2020&sig=SIGCANARY&se=1 x",
                "--azureblob-sas-url=*** x",
            ),
            (
                "GET https://a.blob/c?sv=2020&sig=SIGCANARY&se=1 failed",
                "GET https://a.blob/c?sv=2020&sig=***&se=1 failed",
            ),
            // A quote that does not close (a mistyped RCLONE_ENDPOINT,
            // echoed by rclone): the value up to the next , : or blank.
            (
                ":s3,secret_access_key='SECRETXY:bucket",
                ":s3,secret_access_key=***:bucket",
            ),
            // (Within rclone's own quotes the inner one pairs with its
            // closing quote: more is hidden, never less.)
            (
                "for \":s3,token=\"SECRETXY,region=x:b\": bad",
                "for \":s3,token=***: bad",
            ),
            // A flag with a secret name and no value keeps the next flag.
            (
                "--sftp-key-use-agent --retries=1",
                "--sftp-key-use-agent --retries=1",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(redact(text), want, "{text}");
        }
    }

    #[test]
    fn redact_keeps_the_words_of_our_own_messages() {
        // Free text names flags in prose; only --flag=value, connection
        // strings and URLs carry secrets there (a command line's separate
        // values are redacted argument by argument, by `display`).
        for text in [
            "--cert and --key must be given together",
            "--password needs --user too",
            "give --user NAME or set ETCDCTL_USER",
            "the --key file is not readable",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    #[test]
    fn imports_nothing_of_the_crate() {
        crate::ground::assert_ground(include_str!("redact.rs"), "redact");
    }
}
