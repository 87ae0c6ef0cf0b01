//! A private CA and a server certificate signed by it, made at run time
//! with the `openssl` command-line tool (Debian's `openssl` package), for
//! the TLS tests: the Kafka client's and the schema registry's. A failure
//! to make them fails the test that asked.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::skip_or_fail;

/// A CA and a server certificate signed by it, in a temporary directory.
#[derive(Debug)]
pub struct Pki {
    _dir: tempfile::TempDir,
    /// The CA's certificate (PEM).
    pub ca: PathBuf,
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
}

/// Runs `openssl` in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes the CA, and a server certificate for `subject_alt_names` signed by
/// it; `None` (skipped) without the `openssl` tool.
pub fn pki_or_skip(subject_alt_names: &str) -> Option<Pki> {
    if Command::new("openssl").arg("version").output().is_err() {
        skip_or_fail("openssl not found (Debian package openssl)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    // Self-contained configuration files: nothing from the system's openssl.cnf.
    std::fs::write(
        path("ca.cnf"),
        "[req]\nprompt = no\ndistinguished_name = dn\nx509_extensions = ca\n\
         [dn]\nCN = fleet test CA\n\
         [ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
         subjectKeyIdentifier = hash\n",
    )
    .unwrap();
    std::fs::write(
        path("server.cnf"),
        "[req]\nprompt = no\ndistinguished_name = dn\n[dn]\nCN = fleet test broker\n",
    )
    .unwrap();
    std::fs::write(
        path("server.ext"),
        format!(
            "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\n\
             extendedKeyUsage = serverAuth\nsubjectAltName = {subject_alt_names}\n\
             subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
        ),
    )
    .unwrap();
    let rsa = ["-newkey", "rsa:2048", "-nodes"];
    openssl(
        dir.path(),
        &[
            &["req", "-x509", "-config", "ca.cnf", "-days", "2"][..],
            &rsa,
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    openssl(
        dir.path(),
        &[
            &["req", "-new", "-config", "server.cnf"][..],
            &rsa,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
    );
    openssl(
        dir.path(),
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
    Some(Pki {
        ca: path("ca.pem"),
        cert: path("server.pem"),
        key: path("server.key"),
        _dir: dir,
    })
}
