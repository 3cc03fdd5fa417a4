//! A throw-away certificate authority for TLS tests (rcgen): one CA, a server certificate for
//! `localhost` and a client certificate, all in PEM.

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// The CA's certificate and one server and one client identity it signed (PEM).
pub struct TestPki {
    pub ca_pem: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

impl TestPki {
    /// A new CA; the server certificate names `localhost`, the client's `client_name`.
    pub fn new(client_name: &str) -> TestPki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server_cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client_cert = CertificateParams::new(vec![client_name.to_string()])
            .unwrap()
            .signed_by(&client_key, &issuer)
            .unwrap();
        TestPki {
            ca_pem: ca_cert.pem(),
            server_cert: server_cert.pem(),
            server_key: server_key.serialize_pem(),
            client_cert: client_cert.pem(),
            client_key: client_key.serialize_pem(),
        }
    }
}
