//! `rediss://`: statekeeper on a private `redis-server` that speaks TLS with a certificate of a
//! private authority, trusted through `redis.tls_ca_file` and refused without it.

use std::{path::Path, time::Duration};

use crate::common::{RedisServer, free_port, settings, spawn_app};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use statekeeper::config::{BackendMode, Settings};

/// Writes `ca.pem` (a fresh authority) and `server.pem`/`server.key` (signed by it, for
/// 127.0.0.1 and localhost) into `dir`.
fn write_certificates(dir: &Path) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "statekeeper test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "redis");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();

    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

/// A `redis-server` with a TLS port beside its plain one; `None` when the test must skip.
fn tls_redis(dir: &Path) -> Option<(RedisServer, u16)> {
    write_certificates(dir);
    let tls_port = free_port();
    let file = |name: &str| dir.join(name).display().to_string();
    let server = RedisServer::start_with(vec![
        "--tls-port".into(),
        tls_port.to_string(),
        "--tls-cert-file".into(),
        file("server.pem"),
        "--tls-key-file".into(),
        file("server.key"),
        "--tls-ca-cert-file".into(),
        file("ca.pem"),
        "--tls-auth-clients".into(),
        "no".into(),
    ])?;
    Some((server, tls_port))
}

fn tls_settings(redis: &RedisServer, tls_port: u16, ca: Option<&Path>) -> Settings {
    let mut s = settings(BackendMode::Redis, Some(redis));
    s.redis.url = Some(format!("rediss://127.0.0.1:{tls_port}/0").into());
    s.redis.tls_ca_file = ca.map(Path::to_path_buf);
    s.redis.connect_timeout_ms = 2_000;
    s.redis.command_timeout_ms = 2_000;
    s
}

#[tokio::test]
async fn rediss_with_the_servers_authority_stores_in_redis() {
    let dir = tempfile::tempdir().unwrap();
    let Some((redis, tls_port)) = tls_redis(dir.path()) else {
        return;
    };
    let ca = dir.path().join("ca.pem");
    let app = spawn_app(tls_settings(&redis, tls_port, Some(&ca))).await;

    let put = app
        .client
        .put(app.url("/v1/cache/tls/greeting"))
        .json(&serde_json::json!({"hello": "over TLS"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 204);
    let (status, body) = app.get_json("/v1/cache/tls/greeting").await;
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"hello": "over TLS"}))
    );

    // The value went through the TLS port into this Redis: the plain port sees it.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*greeting*")
        .query(&mut redis.connection())
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    app.wait_for_health(Duration::from_secs(5), |h| {
        h["backend"]["active"] == "redis" && h["backend"]["redis"]["status"] == "healthy"
    })
    .await;
}

#[tokio::test]
async fn rediss_refuses_a_server_it_cannot_verify() {
    let dir = tempfile::tempdir().unwrap();
    let Some((redis, tls_port)) = tls_redis(dir.path()) else {
        return;
    };
    // No tls_ca_file: the system's authorities, which never signed this server's certificate.
    let app = spawn_app(tls_settings(&redis, tls_port, None)).await;
    let response = app
        .client
        .put(app.url("/v1/cache/tls/greeting"))
        .json(&serde_json::json!(1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "backend_unavailable", "{problem}");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut redis.connection())
        .unwrap();
    assert!(keys.is_empty(), "nothing was written: {keys:?}");
}
