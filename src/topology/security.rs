//! TLS and ACL for a topology gameday owns (`[topology] tls`, `auth`): a CA
//! and a server certificate made for the run (rcgen), written into each
//! node's directory, and the ACL user every client — and every node, for
//! replication and Sentinel — authenticates as. For an external topology,
//! only how to reach it: TLS trusting a given CA file, and the user.

use crate::redis_admin::access::{Access, Secret};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the scenario asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityPlan {
    pub tls: bool,
    /// external: the CA that signed the servers' certificates.
    pub ca_file: Option<PathBuf>,
    pub auth: Option<AuthPlan>,
}

/// `auth = { user, password_env }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPlan {
    pub user: String,
    pub password_env: String,
}

/// A run's certificates, in PEM.
pub struct TlsFiles {
    pub ca: String,
    cert: String,
    key: String,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsFiles(ca, cert, key)")
    }
}

/// How a topology's nodes are secured, made once per run.
#[derive(Debug, Clone, Default)]
pub struct Security {
    pub access: Access,
    /// Owned topologies with TLS: the files each node serves with.
    pub files: Option<Arc<TlsFiles>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot make the run's TLS certificates: {0}")]
    Certificates(String),
    #[error("`ca_file` {path}: {source}")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
    #[error("the external topology's ACL password is read from ${0}, which is not set")]
    NoPassword(String),
    #[error("the ACL password in ${0} holds a space or a control character; Redis cannot take it")]
    BadPassword(String),
}

/// The files' names in a node's `tls/` directory.
pub const CA: &str = "ca.crt";
const CERT: &str = "server.crt";
const KEY: &str = "server.key";

impl Security {
    /// For a topology gameday starts: certificates made now, the password
    /// from its variable or made now.
    pub fn owned(plan: &SecurityPlan) -> Result<Security, SecurityError> {
        let files = plan.tls.then(make_certificates).transpose()?.map(Arc::new);
        let user = match &plan.auth {
            None => None,
            Some(a) => {
                let password = password_in(&a.password_env).unwrap_or_else(random_password);
                // It goes into the nodes' configuration files as one word.
                if password
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(SecurityError::BadPassword(a.password_env.clone()));
                }
                Some((a.user.clone(), Secret::new(password)))
            }
        };
        Ok(Security {
            access: Access {
                tls_ca: files.as_ref().map(|f| Arc::from(f.ca.as_bytes())),
                user,
            },
            files,
        })
    }

    /// For an external topology: its CA file, and a password that must be set.
    pub fn external(plan: &SecurityPlan) -> Result<Security, SecurityError> {
        let tls_ca = match (&plan.tls, &plan.ca_file) {
            (true, Some(path)) => Some(Arc::from(std::fs::read(path).map_err(|source| {
                SecurityError::CaFile {
                    path: path.display().to_string(),
                    source,
                }
            })?)),
            (true, None) => Some(Arc::from(&[][..])),
            (false, _) => None,
        };
        let user = match &plan.auth {
            None => None,
            Some(a) => {
                let p = password_in(&a.password_env)
                    .ok_or_else(|| SecurityError::NoPassword(a.password_env.clone()))?;
                Some((a.user.clone(), Secret::new(p)))
            }
        };
        Ok(Security {
            access: Access { tls_ca, user },
            files: None,
        })
    }

    /// Writes the TLS files into `host_dir/tls` (mode 0600), if any.
    pub fn write_files(&self, host_dir: &Path) -> std::io::Result<()> {
        let Some(f) = &self.files else { return Ok(()) };
        let dir = host_dir.join("tls");
        std::fs::create_dir_all(&dir)?;
        for (name, text) in [(CA, &f.ca), (CERT, &f.cert), (KEY, &f.key)] {
            super::config::write_private(&dir.join(name), text)?;
        }
        Ok(())
    }

    /// The server's TLS settings as `(directive, value)`, with the files
    /// under `dir/tls` as the server sees it.
    pub fn tls_directives(&self, dir: &Path) -> Vec<(&'static str, String)> {
        if self.files.is_none() {
            return Vec::new();
        }
        let file = |n: &str| dir.join("tls").join(n).display().to_string();
        vec![
            ("tls-cert-file", file(CERT)),
            ("tls-key-file", file(KEY)),
            ("tls-ca-cert-file", file(CA)),
            ("tls-auth-clients", "no".into()),
            ("tls-replication", "yes".into()),
        ]
    }

    /// The configuration lines for the ACL user: the user with every
    /// right, the default user off, and replicas authenticating as it.
    pub fn acl_lines(&self, sentinel: bool) -> String {
        let Some((user, password)) = &self.access.user else {
            return String::new();
        };
        let p = password.expose();
        let mut out = format!("user {user} on >{p} ~* &* +@all\nuser default off\n");
        if sentinel {
            out.push_str(&format!(
                "sentinel sentinel-user {user}\nsentinel sentinel-pass {p}\n"
            ));
        } else {
            out.push_str(&format!("masteruser {user}\nmasterauth {p}\n"));
        }
        out
    }
}

/// The password in variable `var`, if it is set and not empty.
fn password_in(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|p| !p.is_empty())
}

/// A password of 32 hex digits.
fn random_password() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..32)
        .map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap())
        .collect()
}

/// A CA for this run and a server certificate it signed, for 127.0.0.1,
/// 127.0.0.2, ::1 and localhost.
fn make_certificates() -> Result<TlsFiles, SecurityError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let e = |e: rcgen::Error| SecurityError::Certificates(e.to_string());
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "gameday run CA");
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let key = KeyPair::generate().map_err(e)?;
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).map_err(e)?;
    for ip in ["127.0.0.1", "127.0.0.2", "::1"] {
        let ip = ip.parse().expect("a literal address");
        server.subject_alt_names.push(SanType::IpAddress(ip));
    }
    server
        .distinguished_name
        .push(DnType::CommonName, "gameday redis");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let cert = server.signed_by(&key, &issuer).map_err(e)?;
    Ok(TlsFiles {
        ca: ca_cert.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}
