//! Mutual TLS: a node started with `--tls-cert/--tls-key/--client-ca` serves clients that
//! present a certificate signed by that CA and refuses the others. The certificates are made
//! in the test with rcgen.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

mod common;

use rempart_proto::v1 as pb;
use tonic::Request;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

#[tokio::test]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::pki::TestPki::new("validator-1");
    let p = |name: &str| dir.path().join(name);
    std::fs::write(p("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(p("server.pem"), &pki.server_cert).unwrap();
    std::fs::write(p("server.key"), &pki.server_key).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_rempart"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(p("data"))
        .arg("--tls-cert")
        .arg(p("server.pem"))
        .arg("--tls-key")
        .arg(p("server.key"))
        .arg("--client-ca")
        .arg(p("ca.pem"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    let mut token = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "ready" {
            break;
        }
        if let Some(rest) = line.strip_prefix("listening grpc=127.0.0.1:") {
            port = rest.split_whitespace().next().unwrap().into();
        }
        if line.starts_with("api-key name=alice ") {
            token = line.rsplit("token=").next().unwrap().into();
        }
    }
    let uri = format!("https://localhost:{port}");
    let ca = Certificate::from_pem(&pki.ca_pem);

    let with_identity = ClientTlsConfig::new()
        .ca_certificate(ca.clone())
        .domain_name("localhost")
        .identity(Identity::from_pem(&pki.client_cert, &pki.client_key));
    let ch = Channel::from_shared(uri.clone())
        .unwrap()
        .tls_config(with_identity)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut diag = pb::diagnostics_client::DiagnosticsClient::new(ch);
    let mut r = Request::new(pb::EchoRequest {
        payload: b"hello".to_vec(),
    });
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    assert_eq!(diag.echo(r).await.unwrap().into_inner().payload, b"hello");

    // Without a client certificate the handshake fails: no call gets through.
    let without = ClientTlsConfig::new()
        .ca_certificate(ca)
        .domain_name("localhost");
    let refused = match Channel::from_shared(uri)
        .unwrap()
        .tls_config(without)
        .unwrap()
        .connect()
        .await
    {
        Err(_) => true,
        Ok(ch) => {
            let mut diag = pb::diagnostics_client::DiagnosticsClient::new(ch);
            diag.echo(Request::new(pb::EchoRequest::default()))
                .await
                .is_err()
        }
    };
    assert!(refused);
    let _ = child.kill();
    let _ = child.wait();
}
