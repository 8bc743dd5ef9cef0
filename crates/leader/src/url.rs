//! `zk://[user:password@]host:port[,host:port...]/path`, the form Mesos's `--zk` and
//! `--master` flags take (reference §5.9): a comma-separated ensemble, digest credentials
//! optional, and a znode path that is required and is not `/`.

use std::fmt;
use std::str::FromStr;

/// A parsed `zk://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ZkUrl {
    /// `host:port,host:port`, as ZooKeeper clients take their ensemble.
    pub servers: String,
    /// The group's znode, absolute, without a trailing slash.
    pub path: String,
    /// `user:password` for ZooKeeper's `digest` scheme.
    pub credentials: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("{0:?} is not a ZooKeeper URL: it must start with zk://")]
    Scheme(String),
    #[error("{0:?} names no ZooKeeper server (expected zk://host:port/path)")]
    NoServers(String),
    #[error("{url:?}: server {server:?} is not host:port")]
    Server { url: String, server: String },
    #[error("{0:?} has no znode path (expected zk://host:port/path, and the path cannot be /)")]
    NoPath(String),
    #[error("{url:?}: znode path {path:?} has an empty or relative component")]
    BadPath { url: String, path: String },
}

impl ZkUrl {
    /// True when `text` looks like a ZooKeeper URL rather than `host:port`.
    pub fn is_zk(text: &str) -> bool {
        text.starts_with("zk://")
    }

    /// The path of a child of the group node.
    pub fn child(&self, name: &str) -> String {
        format!("{}/{name}", self.path)
    }
}

impl FromStr for ZkUrl {
    type Err = UrlError;

    fn from_str(url: &str) -> Result<Self, UrlError> {
        let rest = url.strip_prefix("zk://").ok_or_else(|| UrlError::Scheme(url.into()))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (credentials, servers) = match authority.rsplit_once('@') {
            Some((credentials, servers)) => (Some(credentials.to_string()), servers),
            None => (None, authority),
        };
        if servers.is_empty() {
            return Err(UrlError::NoServers(url.into()));
        }
        for server in servers.split(',') {
            let valid = server
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                return Err(UrlError::Server { url: url.into(), server: server.into() });
            }
        }
        let path = path.trim_end_matches('/');
        if path.is_empty() {
            return Err(UrlError::NoPath(url.into()));
        }
        if path[1..].split('/').any(|part| part.is_empty() || part == "." || part == "..") {
            return Err(UrlError::BadPath { url: url.into(), path: path.into() });
        }
        Ok(ZkUrl { servers: servers.into(), path: path.into(), credentials })
    }
}

/// Shows the URL without its password, so that it can be logged.
impl fmt::Display for ZkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.credentials {
            Some(credentials) => {
                let user = credentials.split_once(':').map_or(credentials.as_str(), |(u, _)| u);
                write!(f, "zk://{user}:***@{}{}", self.servers, self.path)
            }
            None => write!(f, "zk://{}{}", self.servers, self.path),
        }
    }
}

impl fmt::Debug for ZkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ensembles_paths_and_credentials() -> Result<(), UrlError> {
        let url: ZkUrl = "zk://a:2181,b:2182/mesos/prod/".parse()?;
        assert_eq!(url.servers, "a:2181,b:2182");
        assert_eq!(url.path, "/mesos/prod");
        assert_eq!(url.credentials, None);
        assert_eq!(url.child("json.info_0000000001"), "/mesos/prod/json.info_0000000001");
        let url: ZkUrl = "zk://jo:s3cret@127.0.0.1:2181/m".parse()?;
        assert_eq!(url.credentials.as_deref(), Some("jo:s3cret"));
        assert_eq!(url.to_string(), "zk://jo:***@127.0.0.1:2181/m");
        Ok(())
    }

    #[test]
    fn refuses_what_mesos_refuses() {
        assert!(matches!("http://a:1/m".parse::<ZkUrl>(), Err(UrlError::Scheme(_))));
        assert!(matches!("zk:///m".parse::<ZkUrl>(), Err(UrlError::NoServers(_))));
        assert!(matches!("zk://a/m".parse::<ZkUrl>(), Err(UrlError::Server { .. })));
        assert!(matches!("zk://a:x/m".parse::<ZkUrl>(), Err(UrlError::Server { .. })));
        assert!(matches!("zk://a:1".parse::<ZkUrl>(), Err(UrlError::NoPath(_))));
        assert!(matches!("zk://a:1/".parse::<ZkUrl>(), Err(UrlError::NoPath(_))));
        assert!(matches!("zk://a:1/m//n".parse::<ZkUrl>(), Err(UrlError::BadPath { .. })));
        assert!(matches!("zk://a:1/m/../n".parse::<ZkUrl>(), Err(UrlError::BadPath { .. })));
    }
}
