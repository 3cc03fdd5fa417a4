//! The `rempart node --config FILE` configuration: a TOML file, then `REMPART_*` environment
//! overrides, validated at start. What this build cannot do yet is refused at start with a
//! message saying so, never accepted and ignored.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::consortium::{ConsortiumOptions, ConsortiumTls};
use super::gateway::RateLimits;
use super::{NodeOptions, TlsFiles};

/// The file's shape.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// "gateway" (default) or "validator".
    pub role: Option<String>,
    /// For role "validator": the validator's JSON configuration (docs/consensus.md); the node
    /// then runs `rempart validator --config` on it. Relative to the working directory.
    pub validator_config: Option<PathBuf>,
    /// gRPC listen address.
    pub listen: Option<String>,
    /// Prometheus listen address.
    pub metrics_listen: Option<String>,
    /// Journal, snapshots and API keys.
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL back office: the compliance (kyc-aml) store: customers, attestations,
    /// decisions, cases. The ledger keeps its embedded block store.
    pub postgres_url: Option<String>,
    /// PKCS#11 module of the HSM holding custody's keys (the PIN comes from
    /// `REMPART_CUSTODY_PKCS11_PIN`, never from the file).
    pub pkcs11_module: Option<PathBuf>,
    /// Label of the token in that module.
    pub pkcs11_token: Option<String>,
    /// OpenTelemetry OTLP endpoint.
    pub otlp_endpoint: Option<String>,
    /// Async worker threads of the API runtime (default: one per core).
    pub api_threads: Option<usize>,
    pub tls: Option<TlsConfig>,
    pub limits: Option<LimitsConfig>,
    /// Settle on a consortium ledger (its validators' API) instead of the node's own
    /// single-validator ledger.
    pub consortium: Option<ConsortiumConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsortiumConfig {
    /// The consortium's genesis file (it must list this node's gate key).
    pub genesis_file: Option<PathBuf>,
    /// Each validator's client API address (`host:port`).
    pub validators: Option<Vec<String>>,
    /// TLS towards the validators (mutual with cert and key).
    pub tls: Option<ConsortiumTlsConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsortiumTlsConfig {
    /// CA of the validators' certificates (PEM).
    pub ca: Option<PathBuf>,
    /// This custodian's client certificate and key (PEM), for mutual TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Name in the validators' certificates, if not the address's host.
    pub domain: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub calls_per_second_per_key: Option<u32>,
    pub calls_per_second_per_ip: Option<u32>,
    pub orders_per_second_per_account: Option<u32>,
}

/// What `rempart node --config` runs.
#[derive(Debug)]
pub enum Launch {
    /// The exchange gateway.
    Gateway(Box<NodeOptions>),
    /// A consortium validator, from its JSON configuration.
    Validator(PathBuf),
}

/// Reads a configuration and decides which role it runs; see [`load`] for the gateway's.
pub fn load_launch(text: &str, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Launch> {
    let c: FileConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    let role = env("REMPART_ROLE").or(c.role.clone());
    if role.as_deref() != Some("validator") {
        return load(text, env).map(|options| Launch::Gateway(Box::new(options)));
    }
    let config = env("REMPART_VALIDATOR_CONFIG")
        .map(PathBuf::from)
        .or(c.validator_config.clone())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "role \"validator\" needs validator_config: the validator's JSON configuration \
                 (docs/consensus.md)"
            )
        })?;
    // The gateway's keys mean nothing to a validator: refused rather than ignored.
    let gateway_only = [
        ("listen", c.listen.is_some()),
        ("metrics_listen", c.metrics_listen.is_some()),
        ("postgres_url", c.postgres_url.is_some()),
        ("pkcs11_module", c.pkcs11_module.is_some()),
        ("tls", c.tls.is_some()),
        ("limits", c.limits.is_some()),
        ("consortium", c.consortium.is_some()),
        ("api_threads", c.api_threads.is_some()),
    ];
    if let Some((key, _)) = gateway_only.iter().find(|(_, set)| *set) {
        anyhow::bail!(
            "{key} is a gateway setting; a validator takes its settings from validator_config"
        );
    }
    if !config.is_file() {
        anyhow::bail!("validator_config {} does not exist", config.display());
    }
    Ok(Launch::Validator(config))
}

/// The gateway's data directory alone (`REMPART_DATA_DIR` overriding the file's), without
/// validating the rest.
pub fn data_dir_of(text: &str, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<PathBuf> {
    let c: FileConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    env("REMPART_DATA_DIR")
        .map(PathBuf::from)
        .or(c.data_dir)
        .ok_or_else(|| anyhow::anyhow!("data_dir is required"))
}

/// Reads, overrides from `env` (name → value) and validates a gateway configuration.
pub fn load(text: &str, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<NodeOptions> {
    let mut c: FileConfig =
        toml::from_str(text).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    let mut tls = c.tls.take().unwrap_or_default();
    if let Some(v) = env("REMPART_ROLE") {
        c.role = Some(v);
    }
    if let Some(v) = env("REMPART_LISTEN") {
        c.listen = Some(v);
    }
    if let Some(v) = env("REMPART_METRICS_LISTEN") {
        c.metrics_listen = Some(v);
    }
    if let Some(v) = env("REMPART_DATA_DIR") {
        c.data_dir = Some(v.into());
    }
    if let Some(v) = env("REMPART_POSTGRES_URL") {
        c.postgres_url = Some(v);
    }
    if let Some(v) = env("REMPART_PKCS11_MODULE") {
        c.pkcs11_module = Some(v.into());
    }
    if let Some(v) = env("REMPART_PKCS11_TOKEN") {
        c.pkcs11_token = Some(v);
    }
    if let Some(v) = env("REMPART_OTLP_ENDPOINT") {
        c.otlp_endpoint = Some(v);
    }
    if let Some(v) = env("REMPART_API_THREADS") {
        c.api_threads = Some(v.trim().parse().map_err(|_| {
            anyhow::anyhow!("REMPART_API_THREADS must be a whole number of threads, not {v:?}")
        })?);
    }
    let mut consortium = c.consortium.take().unwrap_or_default();
    if let Some(v) = env("REMPART_CONSORTIUM_GENESIS") {
        consortium.genesis_file = Some(v.into());
    }
    if let Some(v) = env("REMPART_CONSORTIUM_VALIDATORS") {
        consortium.validators = Some(
            v.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(String::from)
                .collect(),
        );
    }
    let consortium = match (consortium.genesis_file, consortium.validators) {
        (None, None) => None,
        (Some(genesis_file), Some(validators)) => {
            let tls = match consortium.tls {
                None => None,
                Some(t) => Some(ConsortiumTls {
                    ca: t
                        .ca
                        .ok_or_else(|| anyhow::anyhow!("consortium.tls needs ca"))?,
                    cert: t.cert,
                    key: t.key,
                    domain: t.domain,
                }),
            };
            let options = ConsortiumOptions {
                genesis_file,
                validators,
                tls,
            };
            options.validate()?;
            Some(options)
        }
        (None, Some(_)) => anyhow::bail!("consortium.validators needs consortium.genesis_file"),
        (Some(_), None) => anyhow::bail!("consortium.genesis_file needs consortium.validators"),
    };
    if let Some(v) = env("REMPART_TLS_CERT") {
        tls.cert = Some(v.into());
    }
    if let Some(v) = env("REMPART_TLS_KEY") {
        tls.key = Some(v.into());
    }
    if let Some(v) = env("REMPART_TLS_CLIENT_CA") {
        tls.client_ca = Some(v.into());
    }

    let role = c.role.as_deref().unwrap_or("gateway");
    match role {
        "gateway" => {}
        "validator" => anyhow::bail!("role \"validator\" is launched by load_launch"),
        other => anyhow::bail!("role must be \"gateway\" or \"validator\", not {other:?}"),
    }
    if c.validator_config.is_some() {
        anyhow::bail!(
            "validator_config is for role \"validator\"; this configuration runs a gateway"
        );
    }
    if let Some(url) = &c.postgres_url
        && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        anyhow::bail!("postgres_url must start with postgres:// or postgresql://");
    }
    let custody_pkcs11 = match (c.pkcs11_module, c.pkcs11_token) {
        (Some(module), Some(token)) if !token.is_empty() => {
            if !module.is_file() {
                anyhow::bail!("pkcs11_module {} does not exist", module.display());
            }
            Some((module, token))
        }
        (Some(_), _) => anyhow::bail!("pkcs11_module needs pkcs11_token (the token's label)"),
        (None, Some(_)) => anyhow::bail!("pkcs11_token needs pkcs11_module"),
        (None, None) => None,
    };
    if let Some(e) = &c.otlp_endpoint {
        crate::telemetry::validate_endpoint(e)?;
    }
    let addr = |name: &str, v: Option<&str>, default: &str| -> anyhow::Result<SocketAddr> {
        v.unwrap_or(default)
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))
    };
    let listen = addr("listen", c.listen.as_deref(), "127.0.0.1:50051")?;
    let metrics_listen = addr(
        "metrics_listen",
        c.metrics_listen.as_deref(),
        "127.0.0.1:9184",
    )?;
    let data_dir = c
        .data_dir
        .ok_or_else(|| anyhow::anyhow!("data_dir is required"))?;
    let tls = match (tls.cert, tls.key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert,
            key,
            client_ca: tls.client_ca,
        }),
        (None, None) if tls.client_ca.is_none() => None,
        _ => anyhow::bail!("tls needs both cert and key (client_ca only with them)"),
    };
    if let Some(t) = &tls {
        for (what, p) in [
            ("tls.cert", Some(&t.cert)),
            ("tls.key", Some(&t.key)),
            ("tls.client_ca", t.client_ca.as_ref()),
        ] {
            if let Some(p) = p
                && !p.is_file()
            {
                anyhow::bail!("{what} {} does not exist", p.display());
            }
        }
    }
    let l = c.limits.unwrap_or_default();
    let d = RateLimits::default();
    let limits = RateLimits {
        calls_per_key: l.calls_per_second_per_key.unwrap_or(d.calls_per_key),
        calls_per_ip: l.calls_per_second_per_ip.unwrap_or(d.calls_per_ip),
        orders_per_account: l
            .orders_per_second_per_account
            .unwrap_or(d.orders_per_account),
    };
    if limits.calls_per_key == 0 || limits.calls_per_ip == 0 || limits.orders_per_account == 0 {
        anyhow::bail!("limits must be positive");
    }
    let api_threads = c.api_threads.map(super::validate_api_threads).transpose()?;
    Ok(NodeOptions {
        listen,
        metrics_listen,
        data_dir,
        tls,
        limits,
        demo: false,
        otlp_endpoint: c.otlp_endpoint,
        custody_pkcs11,
        postgres_url: c.postgres_url.map(super::compliance::DbUrl),
        consortium,
        api_threads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_gateway_config_loads_and_env_overrides_it() {
        let text = "role = \"gateway\"\nlisten = \"127.0.0.1:6000\"\ndata_dir = \"/tmp/x\"\n[limits]\ncalls_per_second_per_key = 5\n";
        let o = load(text, &no_env).unwrap();
        assert_eq!(o.listen.port(), 6000);
        assert_eq!(o.limits.calls_per_key, 5);
        let env = |k: &str| (k == "REMPART_LISTEN").then(|| "127.0.0.1:7000".to_string());
        assert_eq!(load(text, &env).unwrap().listen.port(), 7000);
        let pg = load(
            "data_dir = \"/x\"\npostgres_url = \"postgres://kyc:pw@h/db\"",
            &no_env,
        )
        .unwrap();
        assert_eq!(
            pg.postgres_url.map(|u| u.0).as_deref(),
            Some("postgres://kyc:pw@h/db")
        );
    }

    #[test]
    fn a_consortium_section_settles_the_gateway_on_the_validators() {
        let dir = tempfile::tempdir().unwrap();
        let genesis = dir.path().join("genesis.json");
        std::fs::write(&genesis, "{}").unwrap();
        let text = format!(
            "data_dir = \"/x\"\n[consortium]\ngenesis_file = {genesis:?}\nvalidators = [\"127.0.0.1:7001\", \"127.0.0.1:7002\"]\n"
        );
        let c = load(&text, &no_env).unwrap().consortium.unwrap();
        assert_eq!(c.genesis_file, genesis);
        assert_eq!(c.validators, ["127.0.0.1:7001", "127.0.0.1:7002"]);
        let env = |k: &str| {
            (k == "REMPART_CONSORTIUM_VALIDATORS").then(|| "10.0.0.1:7001, 10.0.0.2:7001".into())
        };
        let c = load(&text, &env).unwrap().consortium.unwrap();
        assert_eq!(c.validators, ["10.0.0.1:7001", "10.0.0.2:7001"]);
        assert!(
            load("data_dir = \"/x\"", &no_env)
                .unwrap()
                .consortium
                .is_none()
        );
        let half = format!("data_dir = \"/x\"\n[consortium]\ngenesis_file = {genesis:?}\n");
        let e = load(&half, &no_env).unwrap_err().to_string();
        assert!(e.contains("needs consortium.validators"), "{e}");
        let absent = "data_dir = \"/x\"\n[consortium]\ngenesis_file = \"/nope.json\"\nvalidators = [\"127.0.0.1:1\"]\n";
        let e = load(absent, &no_env).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        // The gate key can be printed before the consortium's genesis exists.
        assert_eq!(data_dir_of(absent, &no_env).unwrap(), PathBuf::from("/x"));
        // A validator's configuration refuses the gateway's consortium section.
        let v = dir.path().join("v.json");
        std::fs::write(&v, "{}").unwrap();
        let e = load_launch(
            &format!(
                "role = \"validator\"\nvalidator_config = {v:?}\n[consortium]\nvalidators = []\n"
            ),
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("consortium is a gateway setting"), "{e}");
    }

    #[test]
    fn a_pkcs11_module_and_token_put_custody_keys_in_the_hsm() {
        let text = "data_dir = \"/x\"\npkcs11_module = \"/bin/sh\"\npkcs11_token = \"custody\"\n";
        let o = load(text, &no_env).unwrap();
        assert_eq!(
            o.custody_pkcs11,
            Some((PathBuf::from("/bin/sh"), "custody".to_string()))
        );
        assert_eq!(
            load("data_dir = \"/x\"", &no_env).unwrap().custody_pkcs11,
            None
        );
    }

    #[test]
    fn a_validator_role_runs_the_validator_config_and_refuses_gateway_keys() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("validator.json");
        std::fs::write(&json, "{}").unwrap();
        let text = format!(
            "role = \"validator\"\nvalidator_config = \"{}\"\n",
            json.display()
        );
        match load_launch(&text, &no_env).unwrap() {
            Launch::Validator(path) => assert_eq!(path, json),
            Launch::Gateway(_) => panic!("a validator config launched a gateway"),
        }
        let err = |text: &str| load_launch(text, &no_env).unwrap_err().to_string();
        assert!(err("role = \"validator\"").contains("validator_config"));
        assert!(err(&format!("{text}listen = \"127.0.0.1:1\"\n")).contains("gateway setting"));
        assert!(err(&format!("{text}api_threads = 2\n")).contains("api_threads is a gateway"));
        assert!(
            err("role = \"validator\"\nvalidator_config = \"/nonexistent.json\"")
                .contains("does not exist")
        );
        // The environment picks the role too.
        let env = |k: &str| (k == "REMPART_ROLE").then(|| "gateway".to_string());
        let refused = load_launch(&format!("{text}data_dir = \"/x\"\n"), &env).unwrap_err();
        assert!(refused.to_string().contains("runs a gateway"), "{refused}");
        assert!(matches!(
            load_launch("data_dir = \"/x\"", &no_env).unwrap(),
            Launch::Gateway(_)
        ));
    }

    #[test]
    fn api_threads_come_from_the_file_or_the_environment_within_bounds() {
        assert_eq!(
            load("data_dir = \"/x\"", &no_env).unwrap().api_threads,
            None
        );
        let text = "data_dir = \"/x\"\napi_threads = 3\n";
        assert_eq!(load(text, &no_env).unwrap().api_threads, Some(3));
        let env =
            |v: &'static str| move |k: &str| (k == "REMPART_API_THREADS").then(|| v.to_string());
        assert_eq!(load(text, &env(" 5")).unwrap().api_threads, Some(5));
        for (text, value, needle) in [
            (text, "many", "REMPART_API_THREADS must be a whole number"),
            (text, "-1", "REMPART_API_THREADS must be a whole number"),
            (text, "0", "api_threads must be between 1 and 256, not 0"),
            (
                "data_dir = \"/x\"",
                "257",
                "api_threads must be between 1 and 256, not 257",
            ),
        ] {
            let err = load(text, &env(value)).unwrap_err().to_string();
            assert!(err.contains(needle), "{value}: {err}");
        }
        let err = load("data_dir = \"/x\"\napi_threads = 0", &no_env).unwrap_err();
        assert!(err.to_string().contains("between 1 and 256"), "{err}");
        let err = load("data_dir = \"/x\"\napi_threads = -2", &no_env).unwrap_err();
        assert!(err.to_string().contains("api_threads"), "{err}");
    }

    #[test]
    fn what_is_not_wired_fails_clearly() {
        let cases = [
            ("role = \"miner\"\ndata_dir = \"/x\"", "gateway"),
            (
                "data_dir = \"/x\"\npostgres_url = \"mysql://h\"",
                "postgres://",
            ),
            (
                "data_dir = \"/x\"\npkcs11_module = \"/nonexistent.so\"\npkcs11_token = \"t\"",
                "does not exist",
            ),
            (
                "data_dir = \"/x\"\npkcs11_module = \"/nonexistent.so\"",
                "pkcs11_token",
            ),
            ("data_dir = \"/x\"\npkcs11_token = \"t\"", "pkcs11_module"),
            ("listen = \"nope\"\ndata_dir = \"/x\"", "listen"),
            (
                "data_dir = \"/x\"\notlp_endpoint = \"collector:4317\"",
                "otlp_endpoint",
            ),
            ("data_dir = \"/x\"\nunknown = 1", "unknown"),
            ("role = \"gateway\"", "data_dir"),
        ];
        for (text, needle) in cases {
            let err = load(text, &no_env).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
