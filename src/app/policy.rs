//! Which requests are shadowed: routes matched by method, path and header,
//! each with a sampling rate, optionally sticky (the same user, cookie or
//! client address is always in or always out), and the shadows it feeds.
//! [`Policy`] is the binary's [`Hooks`] for selection.

use std::hash::{DefaultHasher, Hash, Hasher};

use crate::proxy::{Backend, Hooks, Request, Role, Selection};
use crate::route::{Matcher, Verdict};

/// What makes sampling sticky: the key whose hash decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    /// The value of this request header.
    Header(String),
    /// The value of this cookie.
    Cookie(String),
    /// The client's IP address.
    ClientIp,
}

impl Sticky {
    /// Parses `header:NAME`, `cookie:NAME` or `client_ip`.
    pub fn parse(s: &str) -> Result<Sticky, String> {
        match s.split_once(':') {
            Some(("header", name)) if !name.is_empty() => Ok(Sticky::Header(name.to_string())),
            Some(("cookie", name)) if !name.is_empty() => Ok(Sticky::Cookie(name.to_string())),
            None if s == "client_ip" => Ok(Sticky::ClientIp),
            _ => Err(format!(
                "sticky = {s:?}: expected \"header:NAME\", \"cookie:NAME\" or \"client_ip\""
            )),
        }
    }

    /// The key of `request`, if it has one.
    fn key(&self, request: &Request<'_>) -> Option<Vec<u8>> {
        match self {
            Sticky::Header(name) => request.header(name).map(<[u8]>::to_vec),
            Sticky::Cookie(name) => cookie(request, name).map(<[u8]>::to_vec),
            Sticky::ClientIp => Some(request.peer().ip().to_string().into_bytes()),
        }
    }
}

/// The value of cookie `name` in the request's Cookie fields.
fn cookie<'a>(request: &Request<'a>, name: &str) -> Option<&'a [u8]> {
    let bytes = request.bytes();
    request
        .head()
        .fields()
        .iter()
        .filter(|f| f.name.get(bytes).eq_ignore_ascii_case(b"cookie"))
        .flat_map(|f| f.value.get(bytes).split(|&b| b == b';'))
        .map(<[u8]>::trim_ascii)
        .find_map(|pair| {
            let eq = pair.iter().position(|&b| b == b'=')?;
            (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
        })
}

/// One selection rule.
#[derive(Debug, Clone)]
pub struct Route {
    /// Its name, for errors and logs.
    pub name: String,
    /// Method tokens it takes (`None`: every method).
    pub methods: Option<Vec<String>>,
    /// The path starts with this.
    pub path_prefix: Option<String>,
    /// The path matches this regex, anchored at its start.
    pub path_regex: Option<Matcher>,
    /// A request header is present (`None` value) or has this value.
    pub header: Option<(String, Option<String>)>,
    /// Percent of matching requests shadowed.
    pub sample: f64,
    /// Sampling by the hash of a key instead of at random.
    pub sticky: Option<Sticky>,
    /// The shadows fed, by name (`None`: every shadow).
    pub shadows: Option<Vec<String>>,
}

impl Route {
    /// A route for every request, shadowing `sample` percent to every
    /// shadow, for `methods` (`None`: all).
    pub fn all(methods: Option<Vec<String>>, sample: f64) -> Self {
        Route {
            name: "default".into(),
            methods,
            path_prefix: None,
            path_regex: None,
            header: None,
            sample,
            sticky: None,
            shadows: None,
        }
    }

    fn matches(&self, request: &Request<'_>) -> bool {
        let path = request.path();
        self.methods
            .as_ref()
            .is_none_or(|m| m.iter().any(|m| m.as_bytes() == request.method_bytes()))
            && self.path_prefix.as_ref().is_none_or(|p| path.starts_with(p.as_bytes()))
            && self
                .path_regex
                .as_ref()
                .is_none_or(|re| re.verdict(path) == Verdict::Match)
            && self
                .header
                .as_ref()
                .is_none_or(|(name, value)| match request.header(name) {
                    None => false,
                    Some(v) => value.as_ref().is_none_or(|want| v == want.as_bytes()),
                })
    }

    /// Whether this request is in the sample.
    fn sampled(&self, request: &Request<'_>, rng: &mut fastrand::Rng) -> bool {
        if self.sample >= 100.0 {
            return true;
        }
        if self.sample <= 0.0 {
            return false;
        }
        // Parts per million, so that 0.01 % still means something.
        let ppm = (self.sample * 10_000.0) as u64;
        match self.sticky.as_ref().and_then(|s| s.key(request)) {
            Some(key) => {
                let mut h = DefaultHasher::new();
                key.hash(&mut h);
                h.finish() % 1_000_000 < ppm
            }
            None => rng.u64(0..1_000_000) < ppm,
        }
    }
}

/// The selection hooks: the first route that matches decides; no match
/// means the master alone.
#[derive(Debug)]
pub struct Policy {
    routes: Vec<Route>,
    rng: fastrand::Rng,
}

impl Policy {
    /// A policy of `routes`, tried in order.
    pub fn new(routes: Vec<Route>) -> Self {
        Policy {
            routes,
            rng: fastrand::Rng::new(),
        }
    }

    /// The routes.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

impl Hooks for Policy {
    fn select_backends(&mut self, request: &Request<'_>, backends: &[Backend]) -> Selection {
        let master = Selection::master_only(backends);
        let Some(route) = self.routes.iter().find(|r| r.matches(request)) else {
            return master;
        };
        if !route.sampled(request, &mut self.rng) {
            return master;
        }
        backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.role == Role::Shadow)
            .filter(|(_, b)| route.shadows.as_ref().is_none_or(|names| names.contains(&b.name)))
            .fold(master, |s, (i, _)| s.with(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HeadStatus, RequestHead};

    fn decide(policy: &mut Policy, raw: &[u8], peer: &str) -> Selection {
        let mut head = RequestHead::new();
        assert!(matches!(head.parse(raw), Ok(HeadStatus::Complete(_))));
        let backends = [
            Backend::new("m", "127.0.0.1:1".parse().unwrap(), Role::Master),
            Backend::new("a", "127.0.0.1:2".parse().unwrap(), Role::Shadow),
            Backend::new("b", "127.0.0.1:3".parse().unwrap(), Role::Shadow),
        ];
        policy.select_backends(&Request::new(&head, raw, peer.parse().unwrap()), &backends)
    }

    #[test]
    fn the_first_matching_route_decides() {
        let mut api = Route::all(Some(vec!["GET".into()]), 100.0);
        api.path_prefix = Some("/api/".into());
        api.shadows = Some(vec!["b".into()]);
        let mut debug = Route::all(None, 100.0);
        debug.header = Some(("x-debug".into(), Some("1".into())));
        let mut versioned = Route::all(None, 100.0);
        versioned.path_regex = Some(Matcher::regex("/v[0-9]+/").unwrap());
        let mut p = Policy::new(vec![api, debug, versioned]);
        let peer = "10.0.0.1:5";
        assert_eq!(
            decide(&mut p, b"GET /api/x HTTP/1.1\r\nHost: h\r\n\r\n", peer),
            Selection::only(0).with(2)
        );
        assert_eq!(
            decide(
                &mut p,
                b"POST /api/x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
                peer
            ),
            Selection::only(0)
        );
        assert_eq!(
            decide(
                &mut p,
                b"PUT /x HTTP/1.1\r\nHost: h\r\nX-Debug: 1\r\nContent-Length: 0\r\n\r\n",
                peer
            )
            .len(),
            3
        );
        assert_eq!(
            decide(&mut p, b"GET /x HTTP/1.1\r\nHost: h\r\nX-Debug: 2\r\n\r\n", peer),
            Selection::only(0)
        );
        assert_eq!(decide(&mut p, b"GET /v2/x HTTP/1.1\r\nHost: h\r\n\r\n", peer).len(), 3);
        assert_eq!(
            decide(&mut p, b"GET /x/v2/ HTTP/1.1\r\nHost: h\r\n\r\n", peer),
            Selection::only(0)
        );
    }

    #[test]
    fn sticky_sampling_keeps_a_key_in_or_out() {
        let mut route = Route::all(None, 50.0);
        route.sticky = Some(Sticky::parse("cookie:uid").unwrap());
        let mut p = Policy::new(vec![route]);
        let mut ins = 0;
        for user in 0..200 {
            let raw = format!("GET / HTTP/1.1\r\nHost: h\r\nCookie: a=b; uid={user}\r\n\r\n");
            let first = decide(&mut p, raw.as_bytes(), "10.0.0.1:5");
            for _ in 0..5 {
                assert_eq!(decide(&mut p, raw.as_bytes(), "10.0.0.9:7"), first, "user {user}");
            }
            ins += usize::from(first.len() > 1);
        }
        // Binomial(200, 0.5): 5 standard deviations is about 35.
        assert!((65..=135).contains(&ins), "{ins} of 200 in");
        assert!(Sticky::parse("cookie:").is_err());
        assert_eq!(Sticky::parse("client_ip"), Ok(Sticky::ClientIp));
    }
}
