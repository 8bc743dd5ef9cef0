//! Unit tests of the fetcher: naming, sources, and fetching local files with extraction,
//! `executable` and the cache. HTTP is covered by the integration test `tests/tests/fetcher.rs`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use super::*;

fn uri(value: &str) -> Uri {
    Uri { value: value.into(), ..Default::default() }
}

/// `data/file` with "hello zip\n", stored uncompressed (made once with `zip -X`).
const ZIP: &[u8] = &[
    0x50, 0x4b, 0x03, 0x04, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x9c, 0x99, 0x75, 0x5d, 0x48, 0xc9,
    0x11, 0x48, 0x0a, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x64, 0x61,
    0x74, 0x61, 0x2f, 0x66, 0x69, 0x6c, 0x65, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x20, 0x7a, 0x69, 0x70,
    0x0a, 0x50, 0x4b, 0x01, 0x02, 0x1e, 0x03, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x9c, 0x99, 0x75,
    0x5d, 0x48, 0xc9, 0x11, 0x48, 0x0a, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa4, 0x81, 0x00, 0x00, 0x00, 0x00, 0x64,
    0x61, 0x74, 0x61, 0x2f, 0x66, 0x69, 0x6c, 0x65, 0x50, 0x4b, 0x05, 0x06, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x37, 0x00, 0x00, 0x00, 0x31, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// A tar archive holding `data/file` with `content` and an executable `bin/run`.
fn tar_bytes(content: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, mode, body) in
        [("data/file", 0o644, content), ("bin/run", 0o755, "#!/bin/sh\necho run\n")]
    {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        builder.append_data(&mut header, path, body.as_bytes()).expect("in-memory tar");
    }
    builder.into_inner().expect("in-memory tar")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("in-memory gzip");
    encoder.finish().expect("in-memory gzip")
}

fn fetcher(dir: &Path) -> Fetcher {
    Fetcher::new(dir.join("cache")).expect("a plain HTTP client builds")
}

#[test]
fn output_names() {
    let cases: &[(&str, Option<&str>, Result<&str, ()>)] = &[
        ("http://h:80/a/b.tar.gz?x=1#f", None, Ok("b.tar.gz")),
        ("http://h/script", None, Ok("script")),
        ("file:///tmp/x.zip", None, Ok("x.zip")),
        ("/abs/y", None, Ok("y")),
        ("http://h/", None, Err(())),
        ("http://h", None, Err(())),
        ("http://h/a", Some("sub/renamed"), Ok("sub/renamed")),
        ("http://h/", Some("named"), Ok("named")),
        ("http://h/a", Some(""), Ok("a")),
        ("http://h/a", Some("../escape"), Err(())),
        ("http://h/a", Some("/abs"), Err(())),
    ];
    for (value, output_file, expected) in cases {
        let mut u = uri(value);
        u.output_file = output_file.map(str::to_string);
        let got = output_name(&u).map_err(drop);
        assert_eq!(got, expected.map(PathBuf::from), "{value} {output_file:?}");
    }
}

#[test]
fn sources() {
    assert_eq!(Source::parse("http://h/x").ok(), Some(Source::Http("http://h/x".into())));
    assert_eq!(Source::parse("file:///a/b").ok(), Some(Source::Local("/a/b".into())));
    assert_eq!(Source::parse("/a/b").ok(), Some(Source::Local("/a/b".into())));
    assert!(matches!(Source::parse("https://h/x"), Err(FetchError::Https)));
    assert!(matches!(Source::parse("ftp://h/x"), Err(FetchError::Scheme(s)) if s == "ftp"));
    assert!(matches!(Source::parse("rel/x"), Err(FetchError::Relative(_))));
}

#[test]
fn archive_kinds() {
    let kind = |name: &str| archive_kind(Path::new(name));
    assert_eq!(kind("a.tar"), Some(Archive::Tar));
    assert_eq!(kind("a.tar.gz"), Some(Archive::TarGz));
    assert_eq!(kind("a.TGZ"), Some(Archive::TarGz));
    assert_eq!(kind("a.zip"), Some(Archive::Zip));
    assert_eq!(kind("a.gz"), None);
    assert_eq!(kind("tar"), None);
}

#[test]
fn cache_keys_depend_on_user_and_uri() {
    let a = cache_key(Some("alice"), "http://h/x");
    assert_eq!(a, cache_key(Some("alice"), "http://h/x"));
    assert_ne!(a, cache_key(Some("bob"), "http://h/x"));
    assert_ne!(a, cache_key(Some("alice"), "http://h/y"));
    assert_eq!(a.len(), 16);
}

#[tokio::test]
async fn archives_are_extracted_into_the_sandbox_and_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("src");
    std::fs::create_dir_all(&source).expect("mkdir");
    std::fs::write(source.join("plain.tar"), tar_bytes("plain")).expect("write");
    std::fs::write(source.join("packed.tgz"), gzip(&tar_bytes("packed"))).expect("write");
    std::fs::write(source.join("stored.zip"), ZIP).expect("write");
    let fetcher = fetcher(dir.path());

    for (name, content) in
        [("plain.tar", "plain"), ("packed.tgz", "packed"), ("stored.zip", "hello zip\n")]
    {
        let sandbox = dir.path().join(format!("sandbox-{name}"));
        let uris = [uri(&format!("file://{}", source.join(name).display()))];
        fetcher.fetch_all(&uris, &sandbox, None).await.expect("fetch");
        let got = std::fs::read_to_string(sandbox.join("data/file")).expect("extracted");
        assert_eq!(got, content, "{name}");
        assert!(sandbox.join(name).is_file(), "{name}: the archive stays");
        if name != "stored.zip" {
            let mode =
                std::fs::metadata(sandbox.join("bin/run")).expect("extracted").permissions().mode();
            assert_eq!(mode & 0o777, 0o755, "{name}: modes survive");
        }
    }
}

#[tokio::test]
async fn executable_skips_extraction_and_extract_false_keeps_the_archive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("a.tar");
    std::fs::write(&archive, tar_bytes("x")).expect("write");
    let fetcher = fetcher(dir.path());
    let sandbox = dir.path().join("sandbox");

    let mut executable = uri(archive.to_str().expect("utf-8 temp path"));
    executable.executable = Some(true);
    executable.output_file = Some("tool".into());
    let mut kept = uri(archive.to_str().expect("utf-8 temp path"));
    kept.extract = Some(false);
    fetcher.fetch_all(&[executable, kept], &sandbox, None).await.expect("fetch");

    let mode = std::fs::metadata(sandbox.join("tool")).expect("renamed").permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    assert!(sandbox.join("a.tar").is_file());
    assert!(!sandbox.join("data").exists(), "nothing was extracted");
}

#[tokio::test]
async fn a_cached_uri_is_fetched_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("payload");
    std::fs::write(&file, "first").expect("write");
    let fetcher = fetcher(dir.path());
    let mut cached = uri(&format!("file://{}", file.display()));
    cached.cache = Some(true);

    fetcher.fetch_all(&[cached.clone()], &dir.path().join("one"), None).await.expect("fetch");
    // The source changes, but the cache already holds the first copy.
    std::fs::write(&file, "second").expect("write");
    fetcher.fetch_all(&[cached.clone()], &dir.path().join("two"), None).await.expect("fetch");
    let read = |s: &str| std::fs::read_to_string(dir.path().join(s).join("payload")).expect("read");
    assert_eq!(read("one"), "first");
    assert_eq!(read("two"), "first");

    // Another user has a cache entry of their own.
    fetcher.fetch_all(&[cached], &dir.path().join("three"), Some("other")).await.expect("fetch");
    assert_eq!(read("three"), "second");
}

#[tokio::test]
async fn a_failed_fetch_names_the_uri_and_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fetcher = fetcher(dir.path());
    let sandbox = dir.path().join("sandbox");
    let missing = format!("file://{}/missing", dir.path().display());
    let after = dir.path().join("after");
    std::fs::write(&after, "x").expect("write");

    let uris = [uri(&missing), uri(after.to_str().expect("utf-8 temp path"))];
    let error = fetcher.fetch_all(&uris, &sandbox, None).await.expect_err("missing file");
    assert!(error.starts_with(&format!("Failed to fetch '{missing}': cannot copy")), "{error}");
    assert!(!sandbox.join("after").exists(), "later URIs are not fetched");
    assert!(!sandbox.join(".missing.fetching").exists(), "no partial file is left");

    let error = fetcher.fetch_all(&[uri("https://h/x")], &sandbox, None).await.expect_err("tls");
    assert!(error.contains("https is not supported"), "{error}");
}

#[tokio::test]
async fn a_corrupt_archive_fails_the_fetch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("bad.tar.gz");
    std::fs::write(&archive, "not gzip").expect("write");
    let error = fetcher(dir.path())
        .fetch_all(&[uri(archive.to_str().expect("utf-8"))], &dir.path().join("s"), None)
        .await
        .expect_err("corrupt");
    assert!(error.contains("cannot extract"), "{error}");
}
