//! `tunelab data pull` against a Hugging Face cache laid out like the hub's (refs, blobs and
//! snapshot links), offline: the split's data files copied out and inspected, a missing
//! dataset or split named clearly.

use crate::common;
use crate::synth::{Answer, Server};
use serde_json::Value;
use std::path::Path;

const COMMIT: &str = "5f1c0e8a9b7d6c4e3f2a1b0c9d8e7f6a5b4c3d2e";

/// `$HF_HOME/hub/datasets--acme--persona` with a train parquet (a link into `blobs/`, as the
/// hub client writes it), a test jsonl and a README.
fn fake_cache(hf_home: &Path) {
    let repo = hf_home.join("hub/datasets--acme--persona");
    let snap = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(snap.join("data")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    let blob = repo.join("blobs/0b9d4e1f2a3c");
    std::fs::copy(common::fixture("data/alpaca_small.parquet"), &blob).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        "../../../blobs/0b9d4e1f2a3c",
        snap.join("data/train-00000-of-00001.parquet"),
    )
    .unwrap();
    #[cfg(not(unix))]
    std::fs::copy(&blob, snap.join("data/train-00000-of-00001.parquet")).unwrap();
    std::fs::write(
        snap.join("data/test-00000-of-00001.jsonl"),
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n",
    )
    .unwrap();
    std::fs::write(snap.join("README.md"), "# persona\n").unwrap();
}

fn pull(home: &tempfile::TempDir, args: &[&str]) -> (i32, String, String) {
    let hf_home = home.path().join("hf");
    let out = common::tunelab(home)
        .env("HF_HOME", &hf_home)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_TOKEN", "hf_secret_token_never_logged")
        .args(["data", "pull"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_split_is_pulled_from_the_cache_offline_and_inspected() {
    let home = tempfile::tempdir().unwrap();
    fake_cache(&home.path().join("hf"));
    let dest = home.path().join("pulled");
    let d = dest.to_str().unwrap();
    let (code, stdout, stderr) = pull(&home, &["acme/persona", "--split", "train", "-o", d]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains("HF_HUB_OFFLINE is set: using the cached snapshot"),
        "{stderr}"
    );
    assert!(
        stdout.contains("acme/persona@5f1c0e8a9b7d: 1 file into"),
        "{stdout}"
    );
    assert!(stdout.contains("format    alpaca"), "{stdout}");
    assert!(
        stdout.contains("records   25 (25 valid, 0 with problems)"),
        "{stdout}"
    );
    let train = dest.join("data/train-00000-of-00001.parquet");
    // A copy of the blob, not a link into the cache.
    assert!(!std::fs::symlink_metadata(&train).unwrap().is_symlink());
    assert_eq!(
        std::fs::read(&train).unwrap(),
        std::fs::read(common::fixture("data/alpaca_small.parquet")).unwrap()
    );
    assert!(!dest.join("data/test-00000-of-00001.jsonl").exists());
    assert!(!dest.join("README.md").exists());

    // Every data file, as JSON; pulling again replaces the copies.
    let (code, stdout, stderr) = pull(&home, &["acme/persona", "-o", d, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["dataset"], "acme/persona");
    assert_eq!(v["commit"], COMMIT);
    assert_eq!(v["offline"], true);
    let files = v["files"].as_array().unwrap();
    let got: Vec<(&str, u64, &str)> = files
        .iter()
        .map(|f| {
            (
                f["repo_path"].as_str().unwrap(),
                f["inspect"]["records"].as_u64().unwrap(),
                f["inspect"]["format"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("data/test-00000-of-00001.jsonl", 1, "openai"),
            ("data/train-00000-of-00001.parquet", 25, "alpaca")
        ]
    );
    // The pulled files validate like any dataset.
    let (code, out, err) = common::run(&home, &["data", "validate", train.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let log = std::fs::read_to_string(home.path().join("state/tunelab.log")).unwrap_or_default();
    assert!(!log.contains("hf_secret_token_never_logged"));
}

#[test]
fn a_missing_dataset_or_split_is_named_clearly_offline() {
    let home = tempfile::tempdir().unwrap();
    fake_cache(&home.path().join("hf"));
    let d = home.path().join("pulled");
    let d = d.to_str().unwrap();
    let (code, _, stderr) = pull(&home, &["acme/absent", "-o", d]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("acme/absent@main is not in the Hugging Face cache"),
        "{stderr}"
    );
    assert!(stderr.contains("HF_HUB_OFFLINE is set"), "{stderr}");
    assert!(stderr.contains(&home.path().join("hf/hub").display().to_string()));
    let (code, _, stderr) = pull(&home, &["acme/persona", "--split", "validation", "-o", d]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no data files of split \"validation\" among its 3 files"),
        "{stderr}"
    );
    let (code, _, stderr) = pull(&home, &["not-an-id", "-o", d]);
    assert_eq!(code, 2);
    assert!(stderr.contains("expected OWNER/NAME"), "{stderr}");
    // A revision that is a commit reads its snapshot directly.
    let (code, stdout, stderr) = pull(
        &home,
        &[
            "acme/persona",
            "--revision",
            COMMIT,
            "--split",
            "test",
            "-o",
            d,
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("records   1"), "{stdout}");
}

/// A hub on a loopback port: the repository listing and the file downloads hf-hub asks for
/// (a `Range: bytes=0-0` probe with `etag`, `x-repo-commit` and `content-range`, then the
/// body).
fn fake_hub() -> Server {
    let parquet = std::fs::read(common::fixture("data/alpaca_small.parquet")).unwrap();
    Server::start(move |req, _| {
        let info = "/api/datasets/acme/persona/revision/main";
        if req.path == info {
            let body = serde_json::json!({
                "sha": COMMIT,
                "siblings": [
                    {"rfilename": ".gitattributes"},
                    {"rfilename": "README.md"},
                    {"rfilename": "data/train-00000-of-00001.parquet"},
                    {"rfilename": "data/test-00000-of-00001.parquet"},
                ],
            });
            return Answer::Http(200, vec![], body.to_string());
        }
        let Some(file) = req
            .path
            .strip_prefix("/datasets/acme/persona/resolve/main/")
        else {
            return Answer::Http(404, vec![], "{\"error\": \"Repository not found\"}".into());
        };
        if file != "data/train-00000-of-00001.parquet" {
            return Answer::Http(404, vec![], "{}".into());
        }
        let range = req.header("range").unwrap_or("bytes=0-").to_string();
        let headers = vec![
            ("etag", "\"0b9d4e1f2a3c\"".to_string()),
            ("x-repo-commit", COMMIT.to_string()),
            (
                "content-range",
                format!("bytes 0-{}/{}", parquet.len() - 1, parquet.len()),
            ),
        ];
        let body = if range == "bytes=0-0" {
            parquet[..1].to_vec()
        } else {
            parquet.clone()
        };
        Answer::Bytes(206, headers, body)
    })
}

#[test]
fn a_dataset_downloads_through_the_cache_then_serves_offline_and_without_a_network() {
    let hub = fake_hub();
    let home = tempfile::tempdir().unwrap();
    let hf_home = home.path().join("hf");
    let dest = home.path().join("pulled");
    let token = "hf_secret_token_never_logged";
    let run = |env: &[(&str, &str)]| {
        let mut c = common::tunelab(&home);
        c.env("HF_HOME", &hf_home)
            .env_remove("HF_HUB_OFFLINE")
            .env("HF_TOKEN", token)
            .args(["data", "pull", "acme/persona", "--split", "train", "-o"])
            .arg(&dest);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&[("HF_ENDPOINT", &hub.base)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stderr.contains("offline"), "{stderr}");
    assert!(stdout.contains("records   25"), "{stdout}");
    let train = dest.join("data/train-00000-of-00001.parquet");
    assert_eq!(
        std::fs::read(&train).unwrap(),
        std::fs::read(common::fixture("data/alpaca_small.parquet")).unwrap()
    );
    // Through the cache, as the hub lays it out; the token went to the hub only.
    let cached = hf_home.join("hub/datasets--acme--persona");
    assert_eq!(
        std::fs::read_to_string(cached.join("refs/main")).unwrap(),
        COMMIT
    );
    assert!(cached
        .join("snapshots")
        .join(COMMIT)
        .join("data/train-00000-of-00001.parquet")
        .exists());
    assert!(hub
        .seen()
        .iter()
        .all(|s| s.header("authorization") == Some(&format!("Bearer {token}"))));
    // Offline, and with the hub unreachable, the cached snapshot serves.
    std::fs::remove_dir_all(&dest).unwrap();
    let (code, stdout, stderr) = run(&[("HF_HUB_OFFLINE", "1")]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(train.exists());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (code, stdout, stderr) = run(&[("HF_ENDPOINT", &nowhere)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains("the hub cannot be reached")
            && stderr.contains("using the cached snapshot"),
        "{stderr}"
    );
    let log = std::fs::read_to_string(home.path().join("state/tunelab.log")).unwrap_or_default();
    assert!(!log.contains(token) && !stderr.contains(token));
}
