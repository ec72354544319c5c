//! The binary: invalid settings exit 2 with one line, `openapi` prints the spec, SIGTERM
//! drains and exits 0.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::Duration,
};

const BIN: &str = env!("CARGO_BIN_EXE_statekeeper");

fn run(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("REDIS_URL")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

#[test]
fn invalid_setting_exits_2_naming_it() {
    let out = run(&[("STATEKEEPER__BACKEND__MODE", "sometimes")], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("backend.mode"), "{stderr}");

    let out = run(&[("STATEKEEPER__SERVER__PORT", "99999")], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("server.port")
    );
}

#[test]
fn password_in_config_file_is_refused() {
    let mut file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
    writeln!(file, "[redis]\npassword = \"s3cret\"").unwrap();
    let out = run(&[], &["--config", file.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("redis.password"), "{stderr}");
    assert!(!stderr.contains("s3cret"));
    let out = run(
        &[("STATEKEEPER_CONFIG", "/nonexistent/statekeeper.toml")],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn openapi_subcommand_prints_the_spec_and_help_explains_both() {
    let out = run(&[], &["openapi"]);
    assert!(out.status.success());
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(
        yaml.starts_with("openapi: 3"),
        "{}",
        &yaml[..40.min(yaml.len())]
    );
    let help = String::from_utf8(run(&[], &["--help"]).stdout).unwrap();
    assert!(help.contains("serve") && help.contains("openapi"), "{help}");
}

#[test]
fn sigterm_drains_and_exits_0() {
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("STATEKEEPER__SERVER__PORT", "0")
        .env("STATEKEEPER__BACKEND__MODE", "memory")
        .env("STATEKEEPER__LOG__FORMAT", "json")
        .env("NO_COLOR", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("the service logs until it listens")
            .unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split('"').next().unwrap().to_string();
        }
    };
    let response = std::net::TcpStream::connect(&address).map(|mut s| {
        s.write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        std::io::Read::read_to_string(&mut s, &mut reply).unwrap();
        reply
    });
    assert!(response.unwrap().starts_with("HTTP/1.1 200"));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "exits after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
