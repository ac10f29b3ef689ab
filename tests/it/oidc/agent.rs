//! A browser, as far as a sign-in needs one: absolute URLs resolved to
//! test sockets by host name (so a redirect to `http://gw.test/...` lands on
//! whichever gateway the test says), a cookie jar per host honouring
//! `Max-Age=0` and `Path`, `Accept: text/html`, redirects left to the test, so
//! it can step in between.

use crate::support::client::req;
use crate::support::{Client, Resp};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

#[derive(Debug, Clone)]
struct Cookie {
    value: String,
    path: String,
}

#[derive(Default)]
pub struct Agent {
    hosts: HashMap<String, SocketAddr>,
    jar: HashMap<String, BTreeMap<String, Cookie>>,
}

/// `(authority, path_and_query)` of an absolute http URL.
pub fn split_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http URL: {url}"));
    match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    }
}

impl Agent {
    pub fn new() -> Agent {
        Agent::default()
    }

    /// Requests to `authority` go to `addr` (`Host` stays `authority`).
    pub fn map(&mut self, authority: &str, addr: SocketAddr) {
        self.hosts.insert(authority.to_string(), addr);
    }

    fn addr(&self, authority: &str) -> SocketAddr {
        self.hosts
            .get(authority)
            .copied()
            .or_else(|| authority.parse().ok())
            .unwrap_or_else(|| panic!("no address for {authority}"))
    }

    /// The cookie `name` the jar holds for `authority`.
    pub fn cookie(&self, authority: &str, name: &str) -> Option<String> {
        self.jar
            .get(authority)
            .and_then(|j| j.get(name))
            .map(|c| c.value.clone())
    }

    pub fn set_cookie(&mut self, authority: &str, name: &str, value: &str, path: &str) {
        self.jar.entry(authority.to_string()).or_default().insert(
            name.to_string(),
            Cookie {
                value: value.to_string(),
                path: path.to_string(),
            },
        );
    }

    pub fn forget_cookies(&mut self, authority: &str) {
        self.jar.remove(authority);
    }

    fn cookie_header(&self, authority: &str, path: &str) -> Option<String> {
        let pairs: Vec<String> = self
            .jar
            .get(authority)?
            .iter()
            .filter(|(_, c)| {
                path == c.path
                    || (path.starts_with(&c.path)
                        && (c.path.ends_with('/') || path[c.path.len()..].starts_with(['/', '?'])))
            })
            .map(|(k, c)| format!("{k}={}", c.value))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    fn store(&mut self, authority: &str, r: &Resp) {
        for v in r.headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let mut parts = v.split(';').map(str::trim);
            let (name, value) = parts.next().unwrap().split_once('=').unwrap();
            let mut path = "/".to_string();
            let mut gone = false;
            for a in parts {
                let (k, val) = a.split_once('=').unwrap_or((a, ""));
                if k.eq_ignore_ascii_case("path") {
                    path = val.to_string();
                }
                if k.eq_ignore_ascii_case("max-age") && val == "0" {
                    gone = true;
                }
            }
            let jar = self.jar.entry(authority.to_string()).or_default();
            if gone {
                jar.remove(name);
            } else {
                jar.insert(
                    name.to_string(),
                    Cookie {
                        value: value.to_string(),
                        path,
                    },
                );
            }
        }
    }

    /// One request to an absolute URL, cookies sent and kept.
    pub async fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Resp {
        let (authority, pq) = split_url(url);
        let mut h: Vec<(&str, &str)> = vec![("host", &authority), ("accept", "text/html")];
        let cookie = self.cookie_header(&authority, pq.split('?').next().unwrap());
        if let Some(c) = &cookie {
            h.push(("cookie", c));
        }
        h.extend_from_slice(headers);
        let r = Client::plain(self.addr(&authority))
            .send(req(method, &pq, &h, body))
            .await;
        self.store(&authority, &r);
        r
    }

    pub async fn get(&mut self, url: &str) -> Resp {
        self.send("GET", url, &[], "").await
    }

    /// Where a redirect response points, made absolute against `from`.
    pub fn location(from: &str, r: &Resp) -> String {
        let loc = r
            .header("location")
            .unwrap_or_else(|| panic!("no Location on a {}: {}", r.status, r.text()));
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else {
            let (authority, _) = split_url(from);
            format!("http://{authority}{loc}")
        }
    }
}
